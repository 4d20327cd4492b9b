"""Distributed start-up and shutdown, shared by every trainer (and batch job) in reelm.

One process per device. Under ``torchrun``, the ``deepspeed`` launcher or a hostfile the
process joins the group its environment describes (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR/PORT``); launched bare it is rank 0 of 1 and, when the caller
needs a process group anyway (DeepSpeed does), makes a 1-process group on a free loopback
port. The backend is NCCL on GPUs and gloo on CPUs. Several CPU processes on one machine
split its cores between them unless ``OMP_NUM_THREADS`` says otherwise.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from reelm.core.device import resolve_device

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | torch.device = "auto", *, need_group: bool = False) -> DistInfo:
    """Join the launcher's process group (or make a 1-process one if ``need_group``); pick this rank's device."""
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    world_size = int(os.environ["WORLD_SIZE"]) if launched else 1
    local_rank = int(os.environ.get("LOCAL_RANK", 0)) if launched else 0
    chosen = resolve_device(device, local_rank=local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    elif world_size > 1 and "OMP_NUM_THREADS" not in os.environ:
        local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("LOCAL_SIZE", "1")))
        if local_procs > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_procs))
    if need_group and not launched:  # what a launcher would have set (DeepSpeed reads LOCAL_RANK)
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if (world_size > 1 or need_group) and not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, chosen)
    return DistInfo(0, 1, 0, chosen)


def shutdown_distributed() -> None:
    """Leave the process group, if one was made (idempotent).

    DeepSpeed keeps clones of the world group in module globals; they die with the group, so they
    are forgotten too, or a second training in the same process (a notebook, the tests) would find
    DeepSpeed holding a destroyed group ("Group ... is not registered").
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        _forget_deepspeed_groups()


def _forget_deepspeed_groups() -> None:
    import sys

    groups = sys.modules.get("deepspeed.utils.groups")
    if groups is None:
        return
    for name in ("_WORLD_GROUP", "_DATA_PARALLEL_GROUP", "_ZERO_PARAM_INTRA_PARALLEL_GROUP"):
        if hasattr(groups, name):
            setattr(groups, name, None)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """Whether ``flag`` is true on any rank (a collective: every rank calls it; also a barrier).
    ``device``: where the group's backend reduces (the GPU under NCCL)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def run_local_ranks(fn, nprocs: int, *args):
    """``fn(*args)`` in ``nprocs`` fresh local processes, ranks of one gloo group on the CPU, one thread each, as
    ``torchrun --nproc_per_node nprocs`` would start them; returns rank 0's result (``fn`` and ``args`` must
    pickle; ``nprocs`` 1 runs ``fn`` here).

    For batch jobs that split their work by rank (``reelm eval generate``) where one process would
    leave cores idle. A rank that fails, or dies, stops the others; its error is raised here in one line.
    """
    import multiprocessing
    import queue

    from reelm.core.errors import ReelmError

    if nprocs == 1:
        return fn(*args)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    port = str(_free_port())
    procs = [ctx.Process(target=_local_rank, args=(rank, nprocs, port, results, fn, args), daemon=True)
             for rank in range(nprocs)]
    for proc in procs:
        proc.start()
    outcomes: dict[int, object] = {}
    try:
        while len(outcomes) < nprocs:
            try:
                rank, ok, value = results.get(timeout=1.0)
            except queue.Empty:
                dead = [r for r, proc in enumerate(procs) if r not in outcomes and proc.exitcode not in (None, 0)]
                if dead:
                    raise ReelmError(f"rank {dead[0]} of {nprocs} died (exit code {procs[dead[0]].exitcode})") from None
                continue
            if not ok:
                raise ReelmError(f"rank {rank} of {nprocs}: {value}")
            outcomes[rank] = value
        return outcomes[0]
    finally:
        for proc in procs:
            if len(outcomes) < nprocs and proc.is_alive():
                proc.terminate()
            proc.join()


def _local_rank(rank: int, nprocs: int, port: str, results, fn, args) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(nprocs), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(nprocs),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    try:
        value = fn(*args)
    except BaseException as exc:  # reported to the parent, which raises it
        results.put((rank, False, f"{type(exc).__name__}: {exc}"))
        return
    finally:
        shutdown_distributed()
    results.put((rank, True, value if rank == 0 else None))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
