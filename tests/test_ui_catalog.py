"""The model picker's view of the zoo and the "this model has no ..." messages."""

from __future__ import annotations

from attnviz import zoo
from attnviz.sources import FileSource
from attnviz.ui import catalog
from attnviz.ui.learn import LESSONS


def test_every_zoo_entry_is_offered_with_its_source_and_availability():
    choices = catalog.model_choices()
    assert [c.id for c in choices] == [s.id for s in zoo.list_specs()]
    default = next(c for c in choices if c.id == zoo.DEFAULT_MODEL_ID)
    assert default.ready and default.label.startswith("[offline]") and "(default)" in default.label
    needs = next(c for c in choices if c.id == "resnet18-cbam")
    assert needs.availability == "needs file" and not needs.ready
    assert "SimAM" in needs.weights  # where the published weights are


def test_models_registered_later_appear_in_the_picker(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    spec = zoo.ModelSpec(id="test-bundled-se", title="Bundled SE", backbone="resnet18",
                         attention="se", placement="fitted", source=FileSource(str(weights)))
    zoo.register(spec)
    try:
        found = next(c for c in catalog.model_choices() if c.id == "test-bundled-se")
        assert found.ready
        # ... and are suggested before those that need a download or a file.
        picks = catalog.suggestions(["se"], limit=100)
        assert picks[0].ready and found in picks
        assert catalog.comparable(zoo.DEFAULT_MODEL_ID, catalog.model_choices())[0] == \
            zoo.DEFAULT_MODEL_ID
    finally:
        zoo._REGISTRY.pop("test-bundled-se")


def test_missing_message_names_the_module_and_example_models():
    not_here = [c for c in catalog.model_choices() if not c.ready]  # whatever is bundled
    text = catalog.missing_message("CBAM spatial mask", ["cbam", "sam"], not_here)
    assert text.startswith("This model has no CBAM spatial mask; pick a model with CBAM or SAM")
    assert "(e.g. `resnet18-cbam` (needs checkpoint)" in text


def test_every_lesson_has_formulas_and_a_live_record_kind():
    keys = {lesson.key for lesson in LESSONS}
    assert keys == {"simam", "se", "cbam-channel", "cbam-spatial", "bam", "nonlocal", "stn", "sssa"}
    for lesson in LESSONS:
        assert lesson.formulas and len(lesson.text.split(". ")) >= 2
        assert catalog.suggestions(lesson.attention), lesson.key


def test_only_models_with_the_same_classes_are_comparable():
    def choice(mid, classes, availability="offline"):
        return catalog.ModelChoice(mid, mid, "se", "fitted", "w", availability, "", classes)

    pool = [choice("a", "imagenet"), choice("b", "imagenet"), choice("c", "x|y"),
            choice("d", "x|y"), choice("e", "x|y", "needs file")]
    assert catalog.comparable("c", pool) == ["c", "d"]
    assert catalog.comparable("a", pool) == ["a", "b"]
    assert catalog.zoo_rows(pool)[2]["classes"] == "2 classes"


def test_zoo_table_rows():
    rows = catalog.zoo_rows(catalog.model_choices())
    default = next(r for r in rows if r["model"] == zoo.DEFAULT_MODEL_ID)
    assert default["availability"] == "offline" and default["attention"] == "SimAM"
    assert {r["availability"] for r in rows} >= {"offline", "needs checkpoint"}
