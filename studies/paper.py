"""The paper's experiments at proxy scale, and the budgeted search a user starts from.

Scaled for a CPU on the built-in 32x32 synthetic dataset: the CIFAR template (Sec. 5.3) cut to
one block a stage and first-stage width 32 (stage widths 32, 64, 128 instead of 256, 512, 1024),
every trial the `search` command's default (``nas.training.config.DEFAULT_TRIAL``, written once
there).
"""

from __future__ import annotations

from nas.training.config import DEFAULT_TRIAL, IMAGENET_TRIAL
from studies.definition import (
    BudgetedSpace,
    GrowthSeries,
    PreservedComplexity,
    StudyDefinition,
    register,
)

# The `search` command's default trial (nas.training.config), the same for every study.
TRIAL = DEFAULT_TRIAL

CARDINALITY_VS_WIDTH = register(
    StudyDefinition(
        name="cardinality-vs-width",
        title="Cardinality vs width at preserved complexity",
        citation="Table 2 / Table 3",
        measures="error against C at equal FLOPs (1x24d ... 32x2d)",
        description=(
            "Table 2's trade-off scaled down: the same cardinalities C = 1, 2, 4, 8, 32, each with "
            "the bottleneck width d that the template generator finds closest to the FLOPs of "
            "1x24d (the paper's 1x64d) on a CIFAR skeleton of depths 1-1-1 and width 32, all "
            "within 5%: 1x24d, 2x16d, 4x10d, 8x6d, 32x2d (the paper's 1x64d, 2x40d, 4x24d, "
            "8x14d, 32x4d). Table 3 reports lower error for higher C; every spec is trained "
            "with every seed, and the dashboard's Table 3 view shows mean ± std over seeds."
        ),
        # Table 2: C in 1, 2, 4, 8, 32 at the complexity of the C=1 (ResNet) reference.
        design=PreservedComplexity(reference=(1, 24), cardinalities=(1, 2, 4, 8, 32)),
        trial_budget=TRIAL,
        seeds=3,
        sampler="random",  # never consulted: every trial is an enqueued (spec, seed)
    )
)

CARDINALITY_VS_WIDTH_IMAGENET = register(
    StudyDefinition(
        name="cardinality-vs-width-imagenet",
        title="Cardinality vs width at preserved complexity, ImageNet template",
        citation="Table 3 (ImageNet)",
        measures="error against C at equal FLOPs on photos (1x24d ... 16x3d)",
        description=(
            "Table 3 on the ImageNet template (7x7 stem, max-pool, four stages) cut to one block "
            "a stage and first-stage width 64, for photos at the ImageNet trial's side (64 px on "
            "a CPU): C = 1, 2, 4, 8, 16 with the d the template generator finds closest to the "
            "FLOPs of 1x24d, all within 5%: 1x24d, 2x15d, 4x9d, 8x5d, 16x3d (C = 32 has no d in "
            "the band at this width). Run it on an ImageNet subset, e.g. --dataset folder "
            "--data-dir imagenette10.tar.gz; every spec is trained with every seed."
        ),
        design=PreservedComplexity(
            reference=(1, 24),
            cardinalities=(1, 2, 4, 8, 16),
            template="imagenet",
            depths=(1, 1, 1, 1),
            width=64,
        ),
        trial_budget=IMAGENET_TRIAL,
        seeds=3,
        sampler="random",  # never consulted: every trial is an enqueued (spec, seed)
    )
)

CARDINALITY_VS_WIDTH_GROWTH = register(
    StudyDefinition(
        name="cardinality-vs-width-growth",
        title="Growing cardinality vs growing width",
        citation="Fig. 7 (Sec. 5.3)",
        measures="error against params: C series at d=4 vs width series at C=1",
        description=(
            "Fig. 7 scaled down: the cardinality series 1x4d, 2x4d, 4x4d, 8x4d, 16x4d (the "
            "paper's 1..16x64d) against the width series 1x8d, 1x16d, 1x32d (the paper's "
            "1x128d ... 1x1024d), both from 1x4d, on a CIFAR skeleton of depths 1-1-1 and "
            "width 32. The paper finds that raising C lowers the error more than raising d at "
            "the same model size; the dashboard's Fig. 7 view draws both series against params "
            "with mean ± std over seeds."
        ),
        design=GrowthSeries(
            bottleneck_width=4, cardinalities=(1, 2, 4, 8, 16), width_factors=(2, 4, 8)
        ),
        trial_budget=TRIAL,
        seeds=3,
        sampler="random",  # never consulted: every trial is an enqueued (spec, seed)
    )
)

BUDGETED_SEARCH = register(
    StudyDefinition(
        name="budgeted-search",
        title="Budgeted TPE search",
        citation="`search` defaults",
        measures="the lowest error within 8e6 FLOPs ±10%",
        description=(
            "The starting point to copy: a TPE search over every CIFAR-template configuration "
            "(depths 1-1-1 and 2-2-2, width 32, every C and d) within 8e6 FLOPs ±10%, the "
            "complexity-preserving family measured first, Hyperband pruning, 20 trials of the "
            "`search` command's default schedule."
        ),
        design=BudgetedSpace(),
        trial_budget=TRIAL,
        seeds=1,
        trials=20,
        sampler="tpe",
        pruner="hyperband",
        enqueue=("family",),
    )
)
