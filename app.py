"""attnviz in the browser: upload a photo, see what every attention module looks at.

Run with ``streamlit run app.py``. This file is layout and widgets only; what is computed,
cached and drawn lives in ``attnviz.ui`` (tested without a browser).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from attnviz.cam import CAM_METHODS, CAM_TITLES
from attnviz.charts import blocks_heatmap_figure, channel_weights_figure, figure_png
from attnviz.custom import select_records
from attnviz.devices import available_devices
from attnviz.inputs import SUPPORTED_SUFFIXES
from attnviz.memory import keep_freed_memory
from attnviz.render import colormap_names
from attnviz.samples import sample_paths
from attnviz.ui import catalog, custom_model, procedural, state, views
from attnviz.ui.bundle import batch_csv, bundle_zip
from attnviz.ui.feedback import guarded
from attnviz.ui.learn import LESSONS
from attnviz.ui.normalization import NORMALIZATIONS
from attnviz.ui.remember import keep, recall
from attnviz.zoo import DEFAULT_MODEL_ID

TABS = ("Overview", "SimAM energy", "CBAM spatial mask", "Channel weights", "Grad-CAM",
        "Localisation", "Compare", "Ablation", "Learn", "Batch")
DEFAULT_CAMS = tuple(m for m in CAM_METHODS if m != "scorecam")
UPLOAD_TYPES = list(SUPPORTED_SUFFIXES)
CHECKPOINT_TYPES = ["safetensors", "pth", "pt", "bin", "tar"]
CHECKPOINT_MAX_MB = 512  # photos stay at the server's 50 MB; a ResNet-50 checkpoint is ~100 MB
TILE_WIDTH = 230
TOP1_CLASS = -1  # the target menu's "top-1" entry (a selectbox shows None as "nothing chosen")

st.set_page_config(page_title="attnviz", page_icon="🔍", layout="wide")
keep_freed_memory()  # once per process: repeated analyses stop re-faulting their memory
# Less empty space above the title, so the photo and the first overlays fit on one screen.
st.html("<style>[data-testid='stMainBlockContainer']{padding-top:2.5rem}</style>")


@st.cache_data(ttl=60, show_spinner=False)
def model_choices() -> list[catalog.ModelChoice]:
    return catalog.model_choices()


def show_tiles(tiles: list[views.Tile], width: int = TILE_WIDTH) -> None:
    if tiles:
        st.image([t.image for t in tiles], caption=[t.caption for t in tiles], width=width)


def view_download(label: str, tiles: list[views.Tile], file_name: str, key: str,
                  bar: np.ndarray | None = None, cols: int = 4) -> None:
    if tiles:
        st.download_button(label, data=lambda: views.tiles_png(tiles, cols=cols, bar=bar),
                           file_name=file_name, mime="image/png", key=key, on_click="ignore",
                           icon=":material/download:")


def show_scale_bar(scales, display: views.Display) -> np.ndarray | None:
    bar = views.scale_bar(scales, display.cmap)
    if bar is not None:
        st.image(bar, caption="one global scale for every map in this view", width=320)
    return bar


@st.dialog("The model zoo", width="large")
def zoo_dialog() -> None:
    st.caption("Every model attnviz can show. offline/cached: works now without a network; "
               "needs download: one download while online; needs checkpoint: upload a file.")
    st.dataframe(pd.DataFrame(catalog.zoo_rows(choices)), hide_index=True, width="stretch")


# --- sidebar: your own model (a TorchScript file, a timm name, a Python factory) -------------
# Chosen by the radio above the zoo picker. The logic (keys, corrections, table rows) lives in
# attnviz/ui/custom_model.py; these functions only place widgets.

MODEL_SOURCES = {"zoo": "Model zoo", "own": "Your own model"}


def own_model_inputs() -> custom_model.OwnInputs:
    """Where the user's own model comes from: drawn before loading."""
    allowed = custom_model.factory_allowed()
    source = st.selectbox("Load from", custom_model.source_options(allowed), key="own_source",
                          format_func=custom_model.SOURCE_TITLES.get)
    st.caption(custom_model.source_note(source))
    fields: dict = {}
    if source == "factory":
        fields["factory"] = st.text_input(
            "Factory on this server", key="own_factory", placeholder="path/to/file.py:build_model",
            help="A function that returns a torch.nn.Module: a file path (relative to the folder "
                 "the server runs in) or an importable package.module, a colon, its name.")
        fields["factory_kwargs"] = st.text_input("Keyword arguments (JSON)",
                                                 key="own_factory_kwargs",
                                                 placeholder='{"num_classes": 10}')
    elif source == "timm":
        fields["timm_name"] = st.text_input("timm model name", key="own_timm",
                                            placeholder="resnet50.a1_in1k")
        fields["num_classes"] = st.number_input("Classes", 1, 100_000, value=None,
                                                key="own_num_classes",
                                                placeholder="the model's own (1000)")
        fields["allow_random"] = st.checkbox("Random weights when none are cached",
                                             key="own_allow_random",
                                             help="to look at the architecture only")
    if source == "torchscript":
        up = st.file_uploader("TorchScript file (torch.jit.save)", key="own_torchscript",
                              type=custom_model.TORCHSCRIPT_TYPES,
                              max_upload_size=CHECKPOINT_MAX_MB)
    else:
        up = st.file_uploader("Checkpoint (optional)", type=CHECKPOINT_TYPES,
                              key=f"own_checkpoint:{source}", max_upload_size=CHECKPOINT_MAX_MB)
        st.caption(custom_model.source_note("checkpoint"))
    with st.expander("Classes and input size"):
        fields["input_size"] = st.number_input("Input size (pixels, square)", 16, 2048,
                                               value=None, key="own_input_size",
                                               placeholder="224 (timm: the model's own)")
        fields["labels_text"] = st.text_area(
            "Class names, one per line", key="own_labels",
            placeholder="empty: ImageNet names for 1000 classes, else class 0, class 1, …")
    if not allowed:
        st.caption(custom_model.FACTORY_OFF)
    return custom_model.OwnInputs(source, data=up.getvalue() if up is not None else None,
                                  data_name=up.name if up is not None else "", **fields)


def load_own_model(own: custom_model.OwnInputs, device: str):
    """The user's model with their corrections (or without them, saying why); None, None while
    something is missing."""
    base = custom_model.make_key(own, device)
    if base is None:
        st.sidebar.info(custom_model.waiting_message(own.source))
        return None, None
    key = base.with_corrections(*custom_model.corrections(st.session_state, base.scope))
    with st.spinner(f"Loading {key.label} …"):
        loaded, used_key, problem = state.get_own_model(key, own.data)
    if problem:
        st.error(problem)
    return loaded, used_key


def own_model_findings(loaded, key: custom_model.CustomKey) -> list[str]:
    """After loading: the attention found, which layers to show, corrections of the detection.
    Returns the layers whose maps the tabs show."""
    scope = key.scope
    st.caption(custom_model.summary(loaded))
    for note in loaded.notes:
        st.info(note)
    overrides, _ = custom_model.corrections(st.session_state, scope)
    rows = custom_model.found_rows(loaded, overrides,
                                   st.session_state.get(custom_model.extra_key(scope), ()))
    st.markdown(f"**Attention found** ({len(custom_model.shown_options(rows))})")
    if rows:
        column = st.column_config
        st.dataframe(custom_model.table(rows), hide_index=True, width="stretch", column_config={
            "layer": column.TextColumn(help="the module's path in the network"),
            "kind": column.TextColumn(width="small", help=custom_model.KINDS_HELP),
            "confidence": column.NumberColumn("conf.", format="%.2f", width="small",
                                              help="how sure detection is (1: known by type)"),
            "found by": column.TextColumn("by", width="small",
                                          help="type: a known class; behaviour: what it does "
                                               "on a probe input; override: set by you"),
        })
    else:
        st.caption("None found. Lower the minimum confidence or read a layer as attention "
                   "under 'Correct the detection'.")
    options = custom_model.shown_options(rows)
    shown_key, known_key = custom_model.shown_key(scope), custom_model.known_key(scope)
    st.session_state[shown_key] = custom_model.carry_selection(
        st.session_state.get(shown_key), st.session_state.get(known_key), options)
    st.session_state[known_key] = options
    chosen = st.multiselect("Attention layers shown", options, key=shown_key,
                            placeholder="none: predictions and CAM only",
                            help="Only these layers' maps appear in the tabs and exports.")
    with st.expander("Correct the detection"):
        st.slider("Minimum confidence", 0.0, 1.0, custom_model.DEFAULT_MIN_CONFIDENCE, 0.05,
                  key=custom_model.min_confidence_key(scope),
                  help="Modules found by their behaviour below this confidence are left out.")
        for row in rows:
            st.selectbox(f"`{row['layer']}` read as", custom_model.READ_AS,
                         key=custom_model.read_as_key(scope, row["layer"]),
                         format_func=lambda o, r=row: custom_model.read_as_label(o, r))
        st.multiselect("Read more layers", custom_model.addable_layers(loaded, rows),
                       key=custom_model.extra_key(scope), placeholder="any layer of the model",
                       help="Layers detection did not report: each gets a 'read as' menu above.")
    return custom_model.layers_shown(rows, chosen)


# --- sidebar: model, analysis settings, display -------------------------------------------

choices = model_choices()
by_id = {c.id: c for c in choices}
ids = sorted(by_id, key=lambda i: not by_id[i].ready)  # what works now first
own = None  # the inputs of 'Your own model', None for a zoo model

with st.sidebar:
    st.header("Model")
    if st.radio("Model source", list(MODEL_SOURCES), key="model_source", horizontal=True,
                format_func=MODEL_SOURCES.get, label_visibility="collapsed") == "own":
        own = own_model_inputs()
        model_id, checkpoint_file = "", None
    else:
        model_id = st.selectbox(
            "Backbone + attention + weights", ids,
            index=ids.index(DEFAULT_MODEL_ID) if DEFAULT_MODEL_ID in by_id else 0,
            format_func=lambda i: procedural.picker_label(by_id[i]), key="model_id",
            help="Every model of the zoo, with whether its weights are here: offline and "
                 "cached ones work without a network.")
        choice = by_id[model_id]
        st.caption(f"**Attention:** "
                   f"{catalog.MODULE_NAMES.get(choice.attention, choice.attention)}"
                   f" ({choice.placement})  \n**Weights:** {choice.weights}  \n"
                   f"**Availability:** {catalog.BADGES.get(choice.availability)} — "
                   f"{catalog.AVAILABILITY_HELP.get(choice.availability, '')}")
        if choice.notes:
            st.caption(choice.notes)
        if st.button("All models and their weights", key="zoo", icon=":material/table_view:"):
            zoo_dialog()
        with st.expander("Your own checkpoint", expanded=choice.availability == "needs file"):
            checkpoint_file = st.file_uploader(
                f"Weights for {model_id} (.safetensors preferred; .pth is read without running "
                "code)", type=CHECKPOINT_TYPES, key=f"checkpoint:{model_id}",
                max_upload_size=CHECKPOINT_MAX_MB)
    device = st.selectbox("Device", ["auto", *available_devices()], key="device",
                          help="auto picks the fastest device present")

model = key = None
shown_layers = None  # the attention layers whose maps are shown (None: all)
load_failed = True  # stays True when the guarded block below reports an error
with guarded("loading the model"):
    if own is not None:
        model, key = load_own_model(own, device)
        model_id = model.id if model is not None else ""
    else:
        checkpoint = checkpoint_file.getvalue() if checkpoint_file is not None else None
        key = state.model_key(model_id, device, checkpoint,
                              checkpoint_file.name if checkpoint_file is not None else "")
        with st.spinner(f"Loading {model_id} …"):
            model = state.get_model(key, checkpoint)
    load_failed = False

with st.sidebar:
    if model is not None:
        st.caption(f"Loaded on {model.device} in {model.load_seconds:.1f} s.")
        if own is not None:
            shown_layers = own_model_findings(model, key)
    st.header("Analysis")
    with st.expander("CAM methods"):
        cam_methods = st.pills(
            "CAM methods", list(CAM_METHODS), selection_mode="multi", default=list(DEFAULT_CAMS),
            key="cam_methods", label_visibility="collapsed",
            format_func=lambda m: CAM_TITLES[m] + (" (slow)" if m == "scorecam" else ""))
    labels = model.labels if model is not None else ()
    picked_class = st.selectbox(
        "Target class for CAMs", [TOP1_CLASS, *range(len(labels))], key=f"target:{len(labels)}",
        format_func=lambda i: "top-1 of each image" if i == TOP1_CLASS else f"{i} · {labels[i]}",
        help="Grad-CAM and Compare explain this class; Compare uses it for every model.")
    target = None if picked_class == TOP1_CLASS else picked_class
    simam_lambda = 1e-4
    if model is not None and model.probe_layers:
        simam_lambda = st.select_slider("SimAM λ (probe)", [1e-4, 1e-3, 1e-2, 0.1],
                                        value=1e-4, key="simam_lambda",
                                        help="regulariser of the SimAM energy")
    st.header("Display")
    cmap = st.selectbox("Colormap", colormap_names(), key="cmap")
    alpha = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="alpha")
    normalization = st.radio("Normalisation", list(NORMALIZATIONS), key="normalization",
                             format_func=NORMALIZATIONS.get)

settings = state.AnalysisSettings(custom_model.usable_cams(model, cam_methods), target, (),
                                  float(simam_lambda))

# --- images ---------------------------------------------------------------------------------

st.markdown("### attnviz · what does the attention look at?")
st.caption("The attention modules' own maps (SimAM energy, CBAM masks, SE channel weights) over "
           "your photo, next to Grad-CAM. Everything runs on this machine.")

images: list[state.ImageItem] = []
samples = sample_paths()
input_col, photo_col, top_col = st.columns([5, 4, 5], gap="medium")
spec = model.spec if model is not None else None
with input_col:
    source = "photos"
    if procedural.offered(spec):  # a model trained on the procedural shapes
        source = st.radio("Image", list(procedural.SOURCES), key=procedural.SOURCE_KEY,
                          horizontal=True, format_func=procedural.SOURCES.get,
                          label_visibility="collapsed")
    if source == "procedural":
        st.button("Draw a procedural sample", key="proc_draw", icon=":material/casino:",
                  on_click=procedural.new_draw, args=(st.session_state,),
                  help="A new random sample; the sequence of draws is fixed by the seed.")
        index_col, seed_col = st.columns(2)
        sample_index = index_col.number_input("Sample index", 0, procedural.MAX_INDEX,
                                              key=procedural.INDEX_KEY)
        seed = seed_col.number_input("Seed", 0, procedural.MAX_SEED, key=procedural.SEED_KEY)
        st.caption(procedural.GALLERY_NOTE)
        with guarded("drawing the procedural sample"):
            images.append(procedural.sample_item(seed, sample_index))
    else:
        uploads = st.file_uploader("Upload one or several photos (drag and drop)",
                                   type=UPLOAD_TYPES, accept_multiple_files=True, key="uploads")
        for up in uploads or []:
            with guarded(f"reading {up.name}"):
                images.append(state.decode_image(up.getvalue(), up.name))
        picked = st.pills("…or sample photos", list(samples), selection_mode="multi",
                          default=list(samples)[:1], key="samples", disabled=bool(uploads),
                          help="used when nothing is uploaded")
        if not uploads:
            for label in picked or []:
                with guarded(f"reading the sample {label}"):
                    images.append(state.sample_image(samples[label]))

if not images:
    st.info("Upload a photo or pick a sample photo to begin.")
    st.stop()

names = [im.name for im in images]
current = images[0]
if len(images) > 1:
    with input_col:
        index = st.selectbox("Photo shown in the tabs", range(len(images)),
                             format_func=lambda i: names[i], key="current")
    current = images[index or 0]

if model is None:
    photo_col.image(views.display_photo(current.array), caption=current.name)
    if own is not None and not load_failed:
        st.warning("Your own model is not loaded yet, so there is nothing to analyse: say where "
                   "it comes from in the sidebar.")
    else:
        st.warning("No model is loaded, so there is nothing to analyse yet; the message above "
                   "says why. " + ("Correct it in the sidebar." if own is not None else
                                   "Pick a model marked offline (the default is one)."))
    st.stop()


def shown(a):
    """An analysis with only the attention layers picked in the sidebar (own models)."""
    return select_records(a, shown_layers)


def analysis_of(image: state.ImageItem, s: state.AnalysisSettings = settings):
    if state.is_cached(image, key, s):
        return shown(state.get_analysis(image, model, key, s))
    if "scorecam" not in s.cam_methods:
        with st.spinner(f"Analysing {image.name} …"):
            return shown(state.get_analysis(image, model, key, s))
    # Score-CAM runs one forward pass per channel of the CAM layer: half a minute on a CPU.
    bar = st.progress(0.0, text=f"Analysing {image.name}: Score-CAM …")
    try:
        return shown(state.get_analysis(
            image, model, key, s,
            progress=views.pass_progress(bar.progress, f"Analysing {image.name}: Score-CAM")))
    finally:
        bar.empty()


def batch_analyses(s: state.AnalysisSettings = settings) -> list:
    """Every photo's analysis, with a progress bar while any is still to compute."""
    out = []
    bar = None
    for i, im in enumerate(images):
        if bar is None and not state.is_cached(im, key, s):
            bar = st.progress(i / len(images), text="Analysing the batch …")
        with guarded(f"analysing {im.name}"):
            out.append((im, shown(state.get_analysis(im, model, key, s))))
        if bar is not None:
            bar.progress((i + 1) / len(images), text=f"Analysed {i + 1} of {len(images)}")
    if bar is not None:
        bar.empty()
    return out


analysis = None
with guarded(f"analysing {current.name}"):
    analysis = analysis_of(current)
if analysis is None:
    st.stop()

with st.sidebar:
    stage_options = views.stages_of(analysis)
    stages = st.multiselect("Stages shown", stage_options, default=stage_options,
                            key=f"stages:{model_id}", format_func=lambda s: f"stage {s}"
                            if s >= 0 else "other")
    layer_options = views.layers_in(analysis, stages)
    layers = st.multiselect("Layers shown", layer_options, default=layer_options,
                            # A new option set (stages, or layers hidden elsewhere) starts
                            # from every layer again.
                            key="layers:" + views.options_key(model_id, layer_options),
                            help="Pick single layers to compare; empty shows none.")
display = views.Display(cmap, alpha, normalization, tuple(stages), tuple(layers))
batch = [(current, analysis)] if normalization == "map" or len(images) == 1 else batch_analyses()
here = next(i for i, (im, _) in enumerate(batch) if im is current)  # the shown photo's row
photo = procedural.display_photo(current)  # a 64 px procedural sample enlarged, sharp
outline = current.mask  # the true object's outline over every map (procedural samples)

# --- header: the photo and its top-5 ---------------------------------------------------------

with photo_col:
    w, h = current.original_size
    note = f" · {'; '.join(current.notes)}" if current.notes else ""
    st.image(photo, caption=f"{current.name} · {w}×{h} · {current.origin}{note}",
             width="stretch")
with top_col:
    truth = procedural.truth_line(current, analysis, model.labels)
    if truth:
        st.markdown(truth)
    st.markdown("**Top-5**")
    for rank, p in enumerate(analysis.predictions, start=1):
        st.progress(min(1.0, p.probability), text=f"{rank}. {p.label} — {p.probability:.1%}")
    st.caption(f"{model.spec.title} · weights: {analysis.weights} · {analysis.device} · "
               f"{views.timing_caption(analysis)}")
    if note := procedural.photo_note(spec, current):
        st.caption(note)

    def whole_bundle() -> bytes:
        named = [(im.name, shown(state.get_analysis(im, model, key, settings))) for im in images]
        return bundle_zip(named, model={"id": model.id, "title": model.spec.title,
                                        "weights": model.weights, "device": str(model.device),
                                        "checkpoint": key.checkpoint_name or None},
                          settings={**analysis.settings, "target": target}, display=display)

    st.download_button("ZIP bundle of the whole analysis", data=whole_bundle,
                       file_name="attnviz-analysis.zip", mime="application/zip",
                       key="zip_bundle", on_click="ignore", icon=":material/folder_zip:",
                       help="Per photo: PNG overlays (on the page's normalisation), raw maps "
                            "(.npz), summary.json; plus manifest.json with model, weights, "
                            "settings, predictions and the overlays' value ranges.")

# --- the views ------------------------------------------------------------------------------

tabs = dict(zip(TABS, st.tabs(TABS, key="tab", on_change="rerun")))


def show_view(per_image: list[list[views.MapItem]], width: int, label: str, file_name: str,
              key: str) -> list[views.Tile]:
    """The current photo's maps as tiles on the view's shared scale, its colour bar (global
    scale) and its PNG download: the common body of the heatmap tabs."""
    scales = views.scales_for(per_image, display.normalization)
    tiles = views.render_tiles(photo, per_image[here], scales, display, outline)
    show_tiles(tiles, width=width)
    bar = show_scale_bar(scales, display)
    view_download(label, tiles, file_name, key, bar)
    return tiles


def overview_tab() -> None:
    per_image = [views.filter_display(views.overview_items(a), display) for _, a in batch]
    items = per_image[here]
    if not items:
        st.info(catalog.missing_message("attention layer with a map in the chosen stages",
                                        ["simam", "cbam", "se"], choices))
        return
    modules = ", ".join(views.module_names(analysis))
    st.caption(f"{len(items)} attention layers ({modules}) of {model.id}, from input "
               "to output. Warmer = more attention by that layer's own measure.")
    show_view(per_image, 150, "Download this view (PNG)", "overview.png", "png_overview")


def simam_tab() -> None:
    if not views.energy_records(analysis):
        st.info(catalog.missing_message("SimAM energy", ["simam"], choices))
        return
    c1, c2, c3 = st.columns(3)
    ss, reductions = st.session_state, list(views.REDUCTIONS)
    reduce = keep(ss, "simam_reduce", c1.radio(
        "Across channels", reductions, key="simam_reduce", format_func=views.REDUCTIONS.get,
        horizontal=True, index=reductions.index(recall(ss, "simam_reduce", "mean", reductions))))
    channel = keep(ss, "simam_channel", c2.number_input(
        "Channel", 0, 4095, recall(ss, "simam_channel", 0), key="simam_channel",
        disabled=reduce != "channel"))
    records = [r for r in views.energy_records(analysis)
               if display.shows(r.layer, r.stage)]
    if not records:
        st.info("No SimAM layer in the chosen stages and layers.")
        return
    names = [r.layer for r in records]
    layer = keep(ss, "simam_layer", c3.selectbox(
        "Layer for the channel grid", names, key="simam_layer",
        index=names.index(recall(ss, "simam_layer", names[len(names) // 2], names))))
    energy = [views.energy_items(a, reduce, int(channel)) for _, a in batch]
    per_image = [views.filter_display(items, display) for items, _ in energy]
    skipped = energy[here][1]
    if skipped:
        st.caption("Left out (fewer channels): " + ", ".join(skipped))
    st.markdown("**Energy per layer** — E_inv = (x−μ)²/(4(σ²+λ)) + ½: bright neurons stand "
                "out from their channel and get a gate near 1.")
    show_view(per_image, 200, "Download the energy maps (PNG)", "simam-energy.png",
              "png_simam")

    rec = next(r for r in records if r.layer == layer)
    top = views.top_energy_channels(rec, 8)
    top_scales = views.scales_for([top], display.normalization)
    top_tiles = views.render_tiles(photo, top, top_scales, display, outline)
    st.markdown(f"**The 8 channels of `{layer}` with the highest mean energy**")
    show_tiles(top_tiles, width=170)
    view_download("Download the channel grid (PNG)", top_tiles, "simam-channels.png",
                  "png_simam_channels", views.scale_bar(top_scales, display.cmap))


def mask_tab() -> None:
    if not analysis.by_kind("spatial_mask"):
        st.info(catalog.missing_message("CBAM spatial mask", ["cbam", "sam"], choices))
        return
    per_image = [views.filter_display(views.mask_items(a), display) for _, a in batch]
    st.markdown("**Spatial mask per block** — σ(7×7 conv of [mean, max] over channels): "
                "the block multiplies every channel at a position by this value.")
    show_view(per_image, 200, "Download the masks (PNG)", "cbam-masks.png", "png_masks")


def weights_tab() -> None:
    records = [r for r in views.weight_records(analysis)
               if display.shows(r.layer, r.stage)]
    if not views.weight_records(analysis):
        st.info(catalog.missing_message("channel weights (SE or CBAM)", ["se", "cbam", "cam"],
                                        choices))
        return
    if not records:
        st.info("No block with channel weights in the chosen stages and layers.")
        return
    c1, c2 = st.columns([3, 1])
    ss, names = st.session_state, [r.layer for r in records]
    layer = keep(ss, "weights_layer", c1.selectbox(
        "Block", names, key="weights_layer",
        index=names.index(recall(ss, "weights_layer", names[-1], names))))
    top_k = keep(ss, "weights_top_k", c2.slider(
        "Top-k", 1, 16, recall(ss, "weights_top_k", 8), key="weights_top_k"))
    rec = next(r for r in records if r.layer == layer)
    data = pd.DataFrame(views.weights_chart_rows(rec, top_k))
    chart = alt.Chart(data).mark_bar().encode(
        x=alt.X("channel:Q", title="channel",
                scale=alt.Scale(domain=[-0.5, rec.data.size - 0.5], nice=False)),
        y=alt.Y("weight:Q", title="weight"),
        color=alt.Color("top:N", scale=alt.Scale(domain=[f"top {top_k}", "other"],
                                                 range=["#d1495b", "#9aa5b1"]), title=None),
        tooltip=["channel", alt.Tooltip("weight:Q", format=".4f")],
    ).properties(height=220, title=f"{layer}: {rec.data.size} channel weights")
    st.altair_chart(chart, width="stretch")
    st.download_button(
        "Download the bar chart (PNG)", key="png_weights_bar", on_click="ignore",
        data=lambda: figure_png(channel_weights_figure(rec.data, title=layer, top_k=top_k)),
        file_name="channel-weights.png", mime="image/png", icon=":material/download:")

    rows, row_labels = views.weights_matrix(analysis)
    st.markdown("**All blocks × channels** (rows padded to the widest block)")
    heat = figure_png(blocks_heatmap_figure(rows, row_labels))
    st.image(heat, width="stretch" if len(rows) > 12 else 720)
    st.download_button("Download the heatmap (PNG)", data=heat, file_name="weights-heatmap.png",
                       mime="image/png", key="png_heatmap", on_click="ignore",
                       icon=":material/download:")

    items = views.top_channel_items(analysis, layer)
    if items:
        scales = views.scales_for([items], display.normalization)
        tiles = views.render_tiles(photo, items, scales, display, outline)
        st.markdown(f"**Activations of the top-weighted channels of `{layer}`** (input of the "
                    "gate, before weighting)")
        show_tiles(tiles, width=170)
        view_download("Download the activations (PNG)", tiles, "top-channels.png",
                      "png_top_channels", views.scale_bar(scales, display.cmap))


def cam_tab() -> None:
    if not model.cam_layer:
        st.info(custom_model.no_cam_message(model))
        return
    if not analysis.cams:
        st.info("Pick at least one CAM method in the sidebar.")
        return
    per_image = [views.cam_items(a) for _, a in batch]
    st.markdown(f"**Class `{analysis.target_label}` ({analysis.target})** at layer "
                f"`{analysis.cam_layer}` — change the class in the sidebar.")
    show_view(per_image, 230, "Download the CAMs (PNG)", "cams.png", "png_cams")


def localisation_tab() -> None:
    if outline is None:
        st.info(procedural.no_mask_message(spec))
        return
    st.markdown(f"**Does each map point at the {current.true_class}?** Every attention map "
                "and CAM of this image scored against the shape's true outline.")
    st.caption("  \n".join(f"**{m.column}**: {m.meaning}; chance {m.chance}."
                           for m in procedural.metrics(outline)))
    rows = procedural.localization_table(analysis, outline)
    score = st.column_config.ProgressColumn(format="%.2f", min_value=0.0, max_value=1.0)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height="content",
                 column_config={"stage": st.column_config.NumberColumn(width="small"),
                                "mass in mask": score, "AUC": score})
    if line := procedural.summary(rows, analysis):
        st.markdown(line)
    if note := procedural.cam_note(current, analysis, model.labels):
        st.caption(note)


def compare_tab() -> None:
    options = (catalog.comparable(model_id, choices) if own is None
               else custom_model.comparable(model, choices))
    title = {**{c.id: c.title for c in choices}, model_id: model.spec.title}
    ss = st.session_state
    picked = keep(ss, "compare_models", st.multiselect(
        "Models to compare", options, default=recall(ss, "compare_models", options[:4], options),
        key="compare_models", format_func=title.get))
    shared = target if target is not None else analysis.target
    st.caption(f"Shared target class for every model: **{model.labels[shared]}** ({shared}). "
               "Offered: the current model and every model with the same classes whose weights "
               "are on this machine.")
    if len(options) == 1:
        st.info("No other model with these classes has weights on this machine, so there is "
                "nothing to compare with yet. Download weights, or upload a checkpoint for "
                "another model and switch to it.")
    progress = st.progress(0.0, text="Running the models …")
    results = []
    for i, mid in enumerate(picked):
        with guarded(f"running {mid}"):
            mkey = key if mid == model_id else state.model_key(mid, device)
            m = model if mid == model_id else state.get_model(mkey)
            # The current model's own analysis already explains its top-1: reuse it.
            same = mid == model_id and target is None
            a = state.get_analysis(current, m, mkey, settings if same else
                                   settings.with_target(shared))
            results.append((mid, shown(a) if mid == model_id else a))
        progress.progress((i + 1) / max(len(picked), 1), text=f"{i + 1} of {len(picked)} models")
    progress.empty()
    all_rows, tiles = [], []
    per_model = [views.compare_items(a) for _, a in results]
    scales = views.scales_for(per_model, display.normalization)
    for (mid, a), items in zip(results, per_model):
        rows = views.agreement_rows(a)
        for r in rows:
            all_rows.append({"model": mid, **r})
        model_tiles = views.render_tiles(photo, items, scales, display, outline)
        tiles += model_tiles
        c1, c2 = st.columns([1, 3])
        p = views.probabilities(a)[shared] if shared < a.logits.size else float("nan")
        c1.markdown(f"**{title[mid]}**  \ntop-1: {a.predictions[0].label} "
                    f"({a.predictions[0].probability:.1%})  \np(target) = {p:.1%}")
        if rows:
            mean_r, mean_iou = views.mean_agreement(rows)
            c1.caption(f"mean agreement with {rows[0]['cam']} over {len(rows)} layers: "
                       f"r = {mean_r:.2f}, IoU = {mean_iou:.2f}")
        if outline is not None and (line := procedural.compare_line(a, outline)):
            c1.caption(line)
        with c2:
            show_tiles(model_tiles, width=200)
    show_scale_bar(scales, display)
    if all_rows:
        st.markdown("**Agreement of each attention map with the CAM** — correlation: Pearson's "
                    "r over pixels; IoU: overlap of the top-20 % regions.")
        st.dataframe(pd.DataFrame(all_rows), hide_index=True, width="stretch")
    view_download("Download the comparison (PNG)", tiles, "compare.png", "png_compare", cols=2)


def ablation_tab() -> None:
    layers = [f.layer for f in model.attention]
    if not layers:
        what = ("attention module to switch off (its SimAM only observes, it never changes "
                "the output)" if model.probe_layers else "attention module to switch off")
        st.info(catalog.missing_message(what, ["se", "cbam", "simam", "bam"], [
            c for c in choices if c.placement in ("fitted", "native")]))
        return
    ss = st.session_state
    every = keep(ss, "ablate_all", st.toggle(f"Switch off all {len(layers)} attention modules",
                                             recall(ss, "ablate_all", False), key="ablate_all"))
    off = layers if every else keep(ss, "ablate", st.multiselect(
        "Switch off (run as identity)", layers, recall(ss, "ablate", [], layers), key="ablate",
        placeholder="pick attention layers"))
    if not off:
        st.info("Pick one or more attention layers to see what the network does without them.")
        return
    ablated = None
    with guarded("running the ablation"):
        ablated = analysis_of(current, settings.with_disabled(off))
    if ablated is None:
        return
    before, after = analysis.predictions[0], ablated.predictions[0]
    st.markdown(f"Top-1: **{before.label}** ({before.probability:.1%}) → "
                f"**{after.label}** ({after.probability:.1%}) with {len(off)} module(s) off")
    table = pd.DataFrame(views.ablation_rows(analysis, ablated))
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(format="percent")
        for c in ("with attention", "switched off", "change")})
    pair, diff = views.ablation_items(analysis, ablated)
    if pair:
        tiles = views.render_tiles(photo, pair, views.scales_for([pair], display.normalization),
                                   display, outline)
        tiles += views.render_tiles(photo, [diff], views.scales_for([[diff]], "map"), display,
                                    outline)
        show_tiles(tiles, width=230)
        view_download("Download (PNG)", tiles, "ablation.png", "png_ablation", cols=3)


def learn_tab() -> None:
    for lesson in LESSONS:
        st.subheader(lesson.title)
        text_col, map_col = st.columns([3, 2])
        with text_col:
            for formula in lesson.formulas:
                st.latex(formula)
            st.write(lesson.text)
        with map_col:
            item = views.lesson_item(analysis, lesson.modules, lesson.kind)
            if item is None:
                st.info(catalog.missing_message(lesson.what, lesson.attention, choices))
            else:
                show_tiles(views.render_tiles(photo, [item], views.scales_for([[item]], "map"),
                                              display, outline), width=300)


def batch_tab() -> None:
    if len(images) < 2:
        st.info(views.batch_hint(source))
    named_analyses = batch_analyses()
    per_image = [views.batch_items(a, display.stages) for _, a in named_analyses]
    scales = views.scales_for(per_image, display.normalization)
    tiles = []
    for (im, a), items in zip(named_analyses, per_image):
        c1, c2 = st.columns([1, 4])
        small = procedural.display_photo(im, 200)
        c1.image(small, caption=im.name, width=150)
        c1.caption(" · ".join(f"{p.label} {p.probability:.0%}" for p in a.predictions[:3]))
        row = views.render_tiles(small, items, scales, display, im.mask)
        tiles += [views.Tile(f"{im.name} · {t.caption}", t.image, t.flat) for t in row]
        with c2:
            show_tiles(row, width=160)
    bar = show_scale_bar(scales, display)
    view_download("Download the gallery (PNG)", tiles, "batch.png", "png_batch", bar,
                  cols=max(len(items) for items in per_image) if per_image else 4)
    named = [(im.name, a) for im, a in named_analyses]
    st.download_button("CSV of predictions and agreement scores", data=lambda: batch_csv(named),
                       file_name="attnviz-batch.csv", mime="text/csv", key="batch_csv",
                       on_click="ignore", icon=":material/table:")


RENDERERS = {"Overview": overview_tab, "SimAM energy": simam_tab, "CBAM spatial mask": mask_tab,
             "Channel weights": weights_tab, "Grad-CAM": cam_tab,
             "Localisation": localisation_tab, "Compare": compare_tab,
             "Ablation": ablation_tab, "Learn": learn_tab, "Batch": batch_tab}
for name, tab in tabs.items():
    with tab:
        if tab.open is not False:
            with guarded(f"drawing the {name} tab"):
                RENDERERS[name]()
