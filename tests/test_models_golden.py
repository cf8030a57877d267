"""Our layers against values computed with the reference code (`../shared/spec/golden.npz`)."""
import numpy as np
import pytest
import torch

from models import SATBlock, SemanticCrossAttention
from models.posemb import add_posemb, concat_posemb, sinusoidal_table


@pytest.fixture(scope="module")
def golden(shared):
    data = np.load(shared / "spec" / "golden.npz")
    return {k: torch.from_numpy(data[k]) for k in data.files}


def _linear(prefix_ours, prefix_golden, g):
    return {f"{prefix_ours}.weight": g[f"{prefix_golden}_weight"], f"{prefix_ours}.bias": g[f"{prefix_golden}_bias"]}


def test_posemb_concat_and_add(golden):
    x = golden["posemb_concat40_in"]
    assert torch.equal(concat_posemb(x, sinusoidal_table(40, *x.shape[-2:])), golden["posemb_concat40_out"])
    x = golden["posemb_add32_in"]
    assert torch.equal(add_posemb(x, sinusoidal_table(32, *x.shape[-2:])), golden["posemb_add32_out"])


def test_sca_matches_reference(golden):
    sca = SemanticCrossAttention(6, 5, 8, heads=2)
    sd = {}
    for name in ("q", "k", "v", "out"):
        sd.update(_linear(name, f"sca_{name}", golden))
    sca.load_state_dict(sd)
    with torch.no_grad():
        out = sca(golden["sca_x_to"], golden["sca_x_from"], golden["sca_mask"])
    torch.testing.assert_close(out, golden["sca_out"], rtol=0, atol=1e-6)


def test_sat_matches_reference(golden):
    sat = SATBlock(6, 4, 5, 8, heads=1)
    sd = {}
    for ours, theirs in (("attention.q", "sat_q"), ("attention.k", "sat_k"), ("attention.v", "sat_v"),
                         ("attention.out", "sat_attn_out"), ("ln1", "sat_ln1"), ("ln2", "sat_ln2"),
                         ("ffn.0", "sat_ffn1"), ("ffn.2", "sat_ffn2")):
        sd.update(_linear(ours, theirs, golden))
    sat.load_state_dict(sd)
    with torch.no_grad():
        out = sat(golden["sca_x_to"], golden["sca_x_from"], golden["sca_mask"])
    torch.testing.assert_close(out, golden["sat_out"], rtol=0, atol=1e-5)
