"""Training utilities shared by the learned models: seeding, devices, DDP, checkpoints, logs, AMP.

torch is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import atomic_path, ensure_folder
from .errors import InputError

if TYPE_CHECKING:
    import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) and ask torch for deterministic kernels."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def select_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available else cpu; 'cpu', 'cuda', 'cuda:1' as given (checked)."""
    import torch

    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device '{device}' requested but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown device '{device}' ({exc})") from None


def _under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def ddp_setup(device: str = "auto") -> tuple[int, int, torch.device]:
    """(rank, world_size, device) from the torchrun environment; (0, 1, device) without it.

    Initialises the default process group (nccl on CUDA, gloo on CPU) when WORLD_SIZE > 1.
    """
    import torch
    import torch.distributed as dist

    if not _under_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return 0, 1, select_device(device)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ["LOCAL_RANK"])
    dev = select_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return rank, world, dev


def ddp_cleanup() -> None:
    """Destroy the process group if one was initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on rank 0 (or when not distributed)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return True
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def unwrap(model: Any) -> Any:
    """The bare module under DistributedDataParallel / DataParallel."""
    return getattr(model, "module", model)


def save_checkpoint(path: str | Path, *, kind: str, model_state: dict, optim_state: dict | None = None,
                    epoch: int, config: dict, metrics: dict, train_state: dict | None = None,
                    rng_state: list | None = None) -> Path:
    """Write a checkpoint of state dicts and plain values atomically (temp name then rename).

    model_state is what inference uses; train_state, when given, the raw weights training resumes
    from (e.g. model_state holds an exponential moving average of them); rng_state, plain values
    (random generator states per process) a resume needs to continue the same random streams.

    Loadable with torch.load(weights_only=True): only tensors, numbers, strings, lists, dicts.
    """
    import torch

    path = Path(path)
    ensure_folder(path.parent, path)
    payload = {
        "kind": str(kind),
        "model_state": {k: v.detach().cpu() for k, v in model_state.items()},
        "optim_state": optim_state,
        "epoch": int(epoch),
        "config": json.loads(json.dumps(config)),
        "metrics": json.loads(json.dumps(metrics)),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": str(torch.__version__),
    }
    if rng_state is not None:
        payload["rng_state"] = json.loads(json.dumps(rng_state))
    if train_state is not None:
        payload["train_state"] = {k: v.detach().cpu() for k, v in train_state.items()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


CHECKPOINT_KEYS = ("kind", "model_state", "config")  # what every user of a checkpoint reads


def check_run_folder(out: str | Path, run_files: tuple[str, ...], resume: bool, resume_hint: str) -> None:
    """OutputError when OUT cannot take a run's files, or already holds a run and this is not a resume."""
    from .atomic import OutputError, output_dir_problem

    out = Path(out)
    if problem := output_dir_problem(out, run_files):
        raise OutputError(f"--out {out}: {problem}")
    if not resume and any((out / name).exists() for name in ("last.pt", "metrics.jsonl")):
        raise OutputError(f"{out} already holds a run: use {resume_hint} or another --out")


def gather(value: Any) -> list:
    """`value` of every process, by rank (a one-item list without DistributedDataParallel)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        values: list = [None] * dist.get_world_size()
        dist.all_gather_object(values, value)
        return values
    return [value]


def _load_cause(exc: BaseException) -> str:
    """One plain line saying why torch.load refused a file: its first sentence, or the safe
    unpickler's reason, without ANSI codes or advice to load unsafely."""
    if isinstance(exc, KeyError | EOFError) or not str(exc).strip():  # pickle's own reading errors
        return "not a PyTorch file, or a truncated one"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    line = line.split(". ", 1)[0].rstrip(".")
    if "weights_only" in line:  # never suggest loading unsafely
        line = "it holds objects other than tensors and plain values"
    return line


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by save_checkpoint, loaded safely (weights_only=True) on the CPU.

    InputError naming the file when it is missing, not such a checkpoint, or lacks a key."""
    import torch

    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise InputError(f"checkpoint {path} is a folder, not a file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is bad input
        raise InputError(f"{path}: not a checkpoint saved by densify train "
                         f"(state dicts only; {_load_cause(exc)})") from None
    if not isinstance(ckpt, dict):
        raise InputError(f"{path}: not a checkpoint saved by densify train (a {type(ckpt).__name__}, not a dict)")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        keys = ", ".join(repr(k) for k in missing)
        raise InputError(f"{path}: not a checkpoint saved by densify train (it lacks {keys})")
    if not isinstance(ckpt["config"], dict):
        raise InputError(f"{path}: its 'config' is not a dict: not a checkpoint saved by densify train")
    return ckpt


class MetricsLog:
    """Appends one JSON object per call to a .jsonl file (with a wall-clock timestamp)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        ensure_folder(self.path.parent, self.path)

    def log(self, **values: Any) -> None:
        row = {"time": round(time.time(), 3)}
        row.update({k: (float(v) if isinstance(v, np.floating) else v) for k, v in values.items()})
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=float) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16; None on CPU (no AMP)."""
    import torch

    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """Mixed precision on CUDA (bf16 or fp16), a no-op on CPU."""
    import torch

    dtype = amp_dtype(device)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type="cuda", dtype=dtype):
        yield


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler enabled only for fp16 on CUDA (bf16 and CPU need none; then it is a pass-through)."""
    import torch

    enabled = amp_dtype(device) == torch.float16
    return torch.amp.GradScaler("cuda" if device.type == "cuda" else "cpu", enabled=enabled)
