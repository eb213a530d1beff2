"""Integration: GPUs together: DDP training, NCCL all-reduce, peer access."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from dbc_accept.messages import fill
from dbc_accept.verdict import check, observe

pytestmark = [pytest.mark.vm, pytest.mark.integration, pytest.mark.gpu]
Probe = Callable[[str], "dict[str, Any]"]

DDP_TOLERANCE = 1e-3  # max |DDP param - single-GPU param| / max |param|


def _multi(probe: Probe) -> dict[str, Any]:
    doc = probe("multi_gpu")
    observe(p2p=doc["p2p"])
    if doc["count"] < 2:
        pytest.skip(fill(f"{{guest}} has {doc['count']} GPU: multi-GPU tests need 2 or more",
                         "en"))
    return doc


def test_p2p_matrix(probe: Probe) -> None:
    doc = _multi(probe)
    pairs = [f"{i}->{j}" for i, row in enumerate(doc["p2p"]) for j, ok in enumerate(row)
             if not ok]
    # A warning only: passthrough VMs often lack P2P, and NCCL then goes through host memory.
    check(not pairs, "guest.p2p", level="warn", observed=f"no peer access {', '.join(pairs)}",
          expected="every GPU can reach every other's memory (P2P)")


def test_allreduce(probe: Probe) -> None:
    doc = _multi(probe)
    rank0 = doc["allreduce"][0]
    observe(allreduce_busbw_GBps={r["bytes"]: round(r["busbw_GBps"], 1) for r in rank0})
    wrong = [r["bytes"] for ranks in doc["allreduce"] for r in ranks if not r["exact"]]
    check(not wrong, "guest.allreduce", observed=f"inexact sums at sizes {sorted(set(wrong))}",
          expected="exact sums on every rank")


def test_ddp_matches_single_gpu(probe: Probe) -> None:
    doc = _multi(probe)
    rel = doc["params_max_abs_diff"] / max(doc["params_max_abs"], 1e-12)
    observe(ddp_param_rel_diff=rel, ddp_final_loss=doc["ddp_losses"][-1],
            single_final_loss=doc["single_losses"][-1])
    check(rel <= DDP_TOLERANCE, "guest.ddp",
          observed=f"DDP weights differ from one-GPU training by {rel:.2e} (relative)",
          expected=f"<= {DDP_TOLERANCE:.0e}")
