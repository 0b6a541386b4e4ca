"""The sizes a spec may take, and counting them without walking them: every field's stated
limit, a stage counted from two blocks whatever its depth, an int64 overflow named by the option
that causes it, and the training memory a spec needs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace

import pytest

import resnext
from resnext.budget import INT64_MAX, Budget, generate
from resnext.complexity import complexity, training_memory
from resnext.spec import LIMITS, Spec
from tests.helpers import HUGE

# --------------------------------------------------------------------------- spec limits


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("width", "width"),
        ("cardinality", "cardinality"),
        ("bottleneck_width", "bottleneck width"),
        ("classes", "classes"),
        ("resolution", "resolution"),
        ("stem_width", "stem width"),
    ],
)
def test_each_field_has_a_stated_limit(field: str, name: str) -> None:
    limit = LIMITS[name]
    Spec(**{field: limit})  # the limit itself is allowed
    with pytest.raises(ValueError, match=f"{name} must be at most {limit:,}, got {limit + 1:,}"):
        Spec(**{field: limit + 1})


def test_depth_limit_and_a_huge_depth_is_refused_not_walked() -> None:
    Spec("cifar", (LIMITS["depth"], 1, 1))
    with pytest.raises(ValueError, match="a depth \\(blocks a stage\\) must be at most 1,000"):
        Spec("imagenet", (int(HUGE), 1, 1, 1))


def python_calls(fn: Callable[[], object]) -> int:
    """The Python function calls ``fn()`` makes: the work it does, whatever its helpers are
    called."""
    calls = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += event == "call"

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def test_a_stage_is_counted_from_two_blocks_whatever_its_depth() -> None:
    """Blocks 2..n of a stage are identical, so counting a 1,000-block stage is the work of
    counting a 2-block one: the same Python calls, where a walk of every block makes ~500x."""
    spec = Spec("imagenet", (1000, 1000, 1000, 1000), 64, 4, 4, resolution=64)
    shallow = replace(spec, depths=(2, 2, 2, 2))
    total = complexity(spec)
    complexity(shallow)  # first calls out of the way: any lazy set-up is not the count's work
    assert python_calls(lambda: complexity(spec)) == python_calls(lambda: complexity(shallow))
    # Linear in each stage's depth: n blocks = first block + (n - 1) copies of the second.
    one = complexity(replace(spec, depths=(1, 1000, 1000, 1000)))
    two = complexity(replace(spec, depths=(2, 1000, 1000, 1000)))
    assert total.params == one.params + 999 * (two.params - one.params)
    assert total.flops == one.flops + 999 * (two.flops - one.flops)
    # The multiplied count is the walked count: the model's parameters at a depth it can build.
    deep = replace(spec, depths=(3, 40, 2, 3), width=16, resolution=32)
    assert complexity(deep).params == sum(
        p.numel() for p in resnext.build(deep, device="meta").parameters()
    )


def test_deep_stage_counts_equal_the_built_model() -> None:
    """A stage of many blocks, counted arithmetically, against the real model's parameters."""
    spec = Spec("cifar", (7, 1, 5), 16, 2, 2, classes=10, resolution=16)
    model = resnext.build(spec, device="meta")
    assert complexity(spec).params == sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------ int64 overflow

BIG = {"widths": (65536,), "depths": [(1000,) * 4], "resolution": 4096}


@pytest.mark.parametrize(
    ("kwargs", "culprit", "fits"),
    [
        # fits at C = 1 and d = 1, overflows at C = 65536 and d = 1
        ({**BIG, "cardinalities": (1, 65536), "bottleneck_widths": (1,)},
         "--cardinalities (up to 65,536)", (1, 1)),
        # fits at C = 65536 with d = 1, overflows with d = 1,000,000
        ({"cardinalities": (65536,), "bottleneck_widths": (1, 1_000_000), "resolution": 4096},
         "--bottleneck-widths (up to 1,000,000)", (65536, 1)),
    ],
)  # fmt: skip
def test_int64_overflow_names_the_option_that_causes_it(
    kwargs: dict, culprit: str, fits: tuple[int, int]
) -> None:
    with pytest.raises(ValueError, match="exceed 9.22e\\+18") as e:
        generate(Budget(flops=4e9), "imagenet", **kwargs)
    assert culprit in str(e.value)
    # The blame is right: without the culprit's largest value the network fits in int64 ...
    depths = kwargs.get("depths", [()])[0]
    width = kwargs.get("widths", (256,))[0]
    spec = Spec("imagenet", depths, width, *fits, resolution=kwargs["resolution"])
    assert max(complexity(spec).to_dict().values()) <= INT64_MAX
    # ... and even every network within the spec's limits does, with C = d = 1.
    widest = Spec("imagenet", (1000,) * 4, 65536, 1, 1, 1 << 20, 4096, 65536)
    assert max(complexity(widest).to_dict().values()) <= INT64_MAX


# ------------------------------------------------------------------------ training memory


def test_training_memory_is_weights_gradients_momentum_and_layer_outputs() -> None:
    """Against the built model's parameters and fvcore's activation count (independent)."""
    import torch
    from fvcore.nn import ActivationCountAnalysis

    spec = Spec("cifar", (1, 2, 1), 32, 4, 2, classes=10, resolution=16)
    model = resnext.build(spec).eval()
    a = ActivationCountAnalysis(model, torch.zeros(1, 3, 16, 16))
    a.unsupported_ops_warnings(False)
    ops = a.by_operator()
    acts = ops["conv"] + ops["linear"]
    params = sum(p.numel() for p in model.parameters())
    assert training_memory(spec, 32) == 12 * params + 4 * 32 * (3 * 16 * 16 + acts)
    assert training_memory(spec, 32, activation_bytes=2) == 12 * params + 2 * 32 * (768 + acts)


def test_training_memory_is_a_lower_bound_of_a_real_step() -> None:
    """One SGD step's peak on the CPU allocator stays above the estimate."""
    import torch

    from nas.training.device import available_memory

    spec = Spec("cifar", (1, 1, 1), 64, 8, 4, classes=10, resolution=32)
    torch.manual_seed(0)
    model = resnext.build(spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    saved: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        # Bytes autograd keeps for the backward pass, each storage once; weights are not
        # activations (they are counted below).
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    state = sum(b.numel() * b.element_size() for s in opt.state.values() for b in s.values())
    weights_and_grads = 2 * sum(p.numel() * 4 for p in model.parameters())
    real = weights_and_grads + state + sum(saved.values())
    assert training_memory(spec, 16) <= real
    assert available_memory(torch.device("cpu")) > 0
