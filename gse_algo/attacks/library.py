"""Drive a library attack (one blocking call) as a generator that advances one model forward call at a time.

Libraries such as adv_lib run an attack as one function call with no per-iteration callback. The call runs in a
worker thread on the run's `CountedModel` whose `before_forward` hands control back to the generator at every forward
call: the generator yields a `ModelCall` (the counts so far and the batch being evaluated, i.e. the current
iterate), and the worker continues only when the caller asks for the next item. So pausing the consumer pauses the
attack, and closing the generator (Stop) raises `Cancelled` inside the library call at its next forward pass.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass

import torch

from .base import RunFunction, Value
from .counting import CountedModel


class Cancelled(BaseException):
    """Raised inside the library call when the run is closed (BaseException: a library's `except Exception`
    must not swallow it)."""


@dataclass(frozen=True)
class ModelCall:
    """What a library attack shows per forward call: the counts so far and the batch it evaluates."""

    n_forward: int
    n_backward: int
    x: torch.Tensor  # detached: the images the model is called on (the current iterate, when it is the full batch)


def drive(call: Callable[[CountedModel], torch.Tensor],
          counted: CountedModel) -> Generator[ModelCall, None, torch.Tensor]:
    """Run `call(counted)` in a worker thread, yielding a ModelCall at every forward call; return its result."""
    to_worker: queue.Queue[str] = queue.Queue()
    to_caller: queue.Queue[tuple[str, object]] = queue.Queue()
    stopped = threading.Event()

    def before_forward(x: torch.Tensor) -> None:
        if not stopped.is_set():
            to_caller.put(("call", ModelCall(counted.n_forward, counted.n_backward, x.detach())))
            if to_worker.get() == "go":
                return
        stopped.set()
        raise Cancelled

    counted.before_forward = before_forward

    def work() -> None:
        if to_worker.get() != "go":
            return
        try:
            to_caller.put(("done", call(counted)))
        except Cancelled:
            pass
        except BaseException as error:  # handed to the caller, which raises it
            to_caller.put(("error", error))

    worker = threading.Thread(target=work, name="library-attack", daemon=True)
    worker.start()
    try:
        while True:
            to_worker.put("go")
            kind, value = to_caller.get()
            if kind == "call":
                yield value
            elif kind == "done":
                return value
            else:
                raise value
    finally:
        stopped.set()
        to_worker.put("stop")
        worker.join()
        counted.before_forward = None


class LibraryError(RuntimeError):
    """A library attack raised an error; the message names the attack and says what the library reported."""


LibraryCall = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, bool, Mapping[str, Value]], torch.Tensor]


def library_run(title: str, call: LibraryCall) -> RunFunction:
    """A registry run function for `call(model, images, labels, targeted, settings) -> x_adv`, one blocking library
    call: it runs through drive() on the run's CountedModel (every forward call counted and handed back), on a
    contiguous copy of the images (adv_lib's L0 projections zero entries through a flattened view, which is a copy,
    and so silently does nothing, for a non-contiguous tensor such as a permuted NHWC array); an error in the
    library becomes a LibraryError naming the attack."""
    def run(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, targeted: bool,
            settings: Mapping[str, Value], trace: bool = False) -> Generator[ModelCall, None, torch.Tensor]:
        counted = model if isinstance(model, CountedModel) else CountedModel(model)
        x = images.detach().contiguous()
        try:
            return (yield from drive(lambda m: call(m, x, labels, targeted, settings), counted))
        except Exception as error:
            raise LibraryError(f"{title} failed inside its library: {type(error).__name__}: {error}") from error
    return run
