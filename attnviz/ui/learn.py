"""The Learn tab's text: each module's formula (LaTeX) and what it means in a few sentences.

Kept as data so the tab stays a loop and a classroom can check the formulas against the code
in ``attnviz/attention/`` (each entry names the record it shows live from the current photo).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    key: str
    title: str
    what: str  # the thing a model may lack, for "this model has no ..."
    formulas: tuple[str, ...]  # LaTeX, one display line each
    text: str
    modules: tuple[str, ...]  # record ``module`` values that carry this module's map
    kind: str  # the record kind shown live
    attention: tuple[str, ...]  # zoo attention names to suggest when the model lacks it


LESSONS: tuple[Lesson, ...] = (
    Lesson(
        "simam", "SimAM: a parameter-free energy per neuron", "SimAM energy",
        (
            r"E_{\mathrm{inv}} = \frac{(x-\mu)^2}{4(\sigma^2+\lambda)} + \frac{1}{2}",
            r"\mu = \frac{1}{HW}\sum_{i} x_i,\qquad \sigma^2 = \frac{1}{HW-1}\sum_i (x_i-\mu)^2",
            r"\tilde{X} = X \odot \operatorname{sigmoid}(E_{\mathrm{inv}})",
        ),
        "SimAM scores every neuron by how much it stands out from the other neurons of its "
        "channel, an idea borrowed from spatial suppression in neuroscience; it learns nothing. "
        "Distinctive neurons get a high inverse energy and a gate close to 1, ordinary ones a gate "
        "near sigmoid(0.5). In the default model SimAM is a probe: the energy is measured at "
        "every block without changing the network's output.",
        ("simam", "simam-probe"), "energy", ("simam",),
    ),
    Lesson(
        "se", "SE: squeeze-and-excitation channel weights", "SE block",
        (
            r"z_c = \frac{1}{HW}\sum_{i,j} X_{c,i,j}",
            r"s = \sigma\big(W_2\,\delta(W_1 z)\big),\qquad W_1 \in \mathbb{R}^{\frac{C}{r}"
            r"\times C},\; W_2 \in \mathbb{R}^{C\times\frac{C}{r}}",
            r"\tilde{X}_c = s_c\, X_c",
        ),
        "SE squeezes each channel to one number by global average pooling, passes the vector "
        "through a small bottleneck MLP and rescales every channel by a weight in (0, 1). It "
        "decides which features matter for this image, not where they are: the live map shows "
        "the activations of the channels it weights highest.",
        ("se",), "top_channels", ("se",),
    ),
    Lesson(
        "cbam-channel", "CBAM, channel attention", "CBAM channel gate",
        (
            r"M_c(F) = \sigma\big(\mathrm{MLP}(\mathrm{AvgPool}(F)) + "
            r"\mathrm{MLP}(\mathrm{MaxPool}(F))\big)",
            r"F' = M_c(F) \otimes F",
        ),
        "CBAM's first gate is SE with a second summary: average- and max-pooled descriptors go "
        "through one shared MLP and are summed before the sigmoid. Max pooling keeps the "
        "strongest response of a channel, which average pooling dilutes.",
        ("cbam", "cam"), "top_channels", ("cbam", "cam"),
    ),
    Lesson(
        "cbam-spatial", "CBAM, spatial attention", "CBAM spatial mask",
        (
            r"M_s(F') = \sigma\big(f^{7\times 7}([\mathrm{AvgPool}_c(F');\,"
            r"\mathrm{MaxPool}_c(F')])\big)",
            r"F'' = M_s(F') \otimes F'",
        ),
        "The second gate pools across channels into two maps (mean and max), convolves them "
        "with one 7x7 kernel and squashes the result into a mask in (0, 1) that multiplies "
        "every channel at each position. This mask is where the block looks.",
        ("cbam", "sam"), "spatial_mask", ("cbam", "sam"),
    ),
    Lesson(
        "bam", "BAM: bottleneck attention", "BAM module",
        (
            r"M(F) = \sigma\big(M_c(F) + M_s(F)\big),\qquad F' = F \otimes \big(1 + M(F)\big)",
            r"M_c(F) = \mathrm{BN}\big(\mathrm{MLP}(\mathrm{AvgPool}(F))\big)",
            r"M_s(F) = \mathrm{BN}\big(f^{1\times1}(f_{d}^{3\times3}(f_{d}^{3\times3}"
            r"(f^{1\times1}(F))))\big)",
        ),
        "BAM sits between stages and adds a channel branch and a spatial branch (with dilated "
        "convolutions for a wide view) before one sigmoid. The residual form 1 + M never "
        "switches a feature off; it only amplifies, so the map is between 1 and 2.",
        ("bam",), "attention", ("bam",),
    ),
    Lesson(
        "nonlocal", "Non-local: every position looks at every other", "non-local block",
        (
            r"y_i = \sum_j \frac{\exp(\theta(x_i)^\top \phi(x_j))}"
            r"{\sum_k \exp(\theta(x_i)^\top \phi(x_k))}\, g(x_j)",
            r"z_i = W_z\, y_i + x_i",
        ),
        "A non-local block is self-attention over positions: each query position takes a "
        "softmax-weighted average of all positions' features. The live map is the affinity "
        "averaged over queries, i.e. where the average position looks.",
        ("nonlocal",), "affinity", ("nonlocal",),
    ),
    Lesson(
        "stn", "STN: a learned transform of the input", "spatial transformer",
        (
            r"\begin{pmatrix} x^{s} \\ y^{s} \end{pmatrix} = \theta"
            r"\begin{pmatrix} x^{t} \\ y^{t} \\ 1 \end{pmatrix},\qquad"
            r"\theta = f_{\mathrm{loc}}(U) \in \mathbb{R}^{2\times 3}",
            r"V = \mathrm{sample}(U,\ \text{grid}(\theta))",
        ),
        "A spatial transformer predicts an affine transform from the image itself and resamples "
        "the image with it, so the network can zoom, shift or rotate towards what matters. "
        "Its attention is the crop it chooses: the live map is the resampled input.",
        ("stn",), "resampled", ("stn",),
    ),
    Lesson(
        "sssa", "SSSA: local window plus global grid self-attention", "SSSA block",
        (
            r"\mathrm{local}_i = \sum_{j \in \mathcal{N}_{7\times7}(i)} a_{ij} v_j,\qquad"
            r"\mathrm{global}_i = \sum_{g \in 16\times16} b_{ig} \bar v_g",
            r"z = x + W_{1\times1}[\mathrm{local};\,\mathrm{global}],\qquad"
            r"\mathrm{share}_{\mathrm{local}} = \frac{\lVert W_l\,\mathrm{local}\rVert}"
            r"{\lVert W_l\,\mathrm{local}\rVert + \lVert W_g\,\mathrm{global}\rVert}",
        ),
        "SSSA lets each position attend to its 7x7 neighbourhood and to a 16x16 pooled summary "
        "of the whole map, then fuses both with a 1x1 convolution. The live map is the share of "
        "the local branch: bright where a position relies on nearby detail, dark where it "
        "relies on global context.",
        ("sssa",), "branch_share", ("sssa",),
    ),
)
