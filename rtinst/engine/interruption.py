"""Training that an interruption does not waste: on SIGINT (Ctrl-C) or SIGTERM the step under
way finishes, a checkpoint of it is written, and training stops; ``--resume`` continues from it
exactly as an uninterrupted run would have (the loader and the schedule resume at the next
iteration). A second signal acts at once, as it would without this hook."""
import logging
import signal
import threading

from detectron2.engine import HookBase
from detectron2.utils import comm

from ..errors import TrainingInterrupted

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptCheckpointer(HookBase):
    """Writes ``model_<iteration>`` through the trainer's ``checkpointer`` at the end of the step
    in which SIGINT or SIGTERM arrived (the same step on every worker), then raises
    ``TrainingInterrupted``. Put it last among the hooks, so that the step's scheduler update
    and metrics are in the checkpoint and the logs."""

    def __init__(self):
        self._received = 0
        self._previous = {}

    def _handle(self, signum, frame):
        self._received = signum
        self._restore()  # a second signal: the default behaviour, at once
        logger.warning(
            "%s received: saving a checkpoint at the end of this iteration (send it again to "
            "stop at once, without saving)", signal.Signals(signum).name
        )

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def before_train(self):
        self._received = 0
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        else:
            logger.info("training outside the main thread: signals are not caught")

    def after_step(self):
        received = self._received
        if comm.get_world_size() > 1:
            received = max(comm.all_gather(received))
        if not received:
            return
        iteration = self.trainer.iter
        name = f"model_{iteration:07d}"
        checkpointer = self.trainer.checkpointer
        checkpointer.save(name, iteration=iteration)
        raise TrainingInterrupted(received, iteration, f"{checkpointer.save_dir}/{name}.pth")

    def after_train(self):
        self._restore()
