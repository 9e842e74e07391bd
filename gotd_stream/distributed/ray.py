"""Ray: the fit's sample pass as Ray tasks, the scoring in a pool of actors that load the model once.

    with ray_cluster(RaySettings(address)) as cluster:
        fitted = fit(paths, target, embedder, settings, sampler=cluster.sample)   # the same sample as one process
        kept = cluster.score(paths, text_field, state, featurizer, potentials, models, budget, counts, units=units)

Each input shard is one unit of work, done by the code a local run uses (select.sample.bottom_k_keyed,
select.score.score_shard); the driver only merges. A shard's candidates come back to the driver, which
writes them to the `--state` folder (a temporary one without it) as soon as they arrive, then merges the folder
in input order as select.executors.Resumable does (OnRay is that executor on Ray): the output is
byte-identical to a local run over the same shards, and a driver killed mid-run resumes with a plain re-run.

Ray does the scheduling and the retries: an actor that dies (its process killed, its node lost) is restarted up
to RETRIES times with the model loaded again, and the shard it held is scored again from its start (up to
RETRIES times); a sample task that dies is retried as often. An error of the input (a corrupt shard, a bad record
under strict) is not retried: it fails the run with the shard's name once the shards in flight are saved.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gotd_stream.errors import RuntimeProblem, SettingsMessage, UsageProblem, setting

if TYPE_CHECKING:
    from gotd_stream.features import ModelSettings
    from gotd_stream.io.records import Skips

log = logging.getLogger(__name__)

RETRIES = 3  # restarts of a dead actor, and retries of the shard or sample task that a dead worker held
REACH_TIMEOUT = 5.0  # seconds to open a TCP connection to a cluster's address before calling it unreachable
INSTALL = "pip install 'gotd-stream[ray]'"
NOT_INSTALLED = "every node of the cluster needs gotd-stream, the same version as here, importable by Ray's workers"
CRASH_HOOK = "GOTD_TEST_CRASH_DIR"  # tests only: an actor dies once in the middle of a shard named in this folder


class RayMissing(UsageProblem):
    """A Ray setting was given, and Ray (an optional extra) is not installed."""


class RayUnreachable(RuntimeProblem):
    """No Ray cluster answers at the address given (or none runs, for "auto")."""


class WorkerLost(RuntimeProblem):
    """A Ray worker died more often than Ray retries it; the message names the shard."""


@dataclass
class RaySettings:
    """Where and how wide to run. address None starts a local cluster (all this machine's cores and GPUs);
    "auto" joins the cluster that RAY_ADDRESS names or the one running on this machine; else HOST:PORT or
    ray://HOST:PORT. actors: scoring actors [default: one per GPU when the cluster has GPUs, else one per CPU];
    gpus: GPUs per actor [default: 1 when the cluster has GPUs, else 0]."""

    address: str | None = None
    actors: int | None = None
    gpus: float | None = None

    def __post_init__(self):
        from gotd_stream.errors import BadSetting, is_number, whole

        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            wanted = "auto, HOST:PORT or ray://HOST:PORT"
            raise BadSetting(f"{setting('ray_address')} must be {wanted}, not {self.address!r}")
        whole("ray_actors", self.actors, 1, optional=True)
        if self.gpus is not None and (not is_number(self.gpus) or self.gpus < 0):
            raise BadSetting(f"{setting('ray_gpus')} must be a finite number of at least 0, not {self.gpus!r}")


def import_ray():
    """The ray module, or RayMissing naming the install command."""
    try:
        import ray
    except ImportError:
        raise RayMissing(f"{setting('ray')} needs Ray, an optional extra: {INSTALL}") from None
    return ray


def check_reachable(address: str) -> None:
    """Fail within seconds, naming the address, when nothing listens there (ray.init would retry for minutes)."""
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageProblem(f"{setting('ray')} {address}: give HOST:PORT, ray://HOST:PORT, auto, or no address")
    try:
        connection = socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT)
    except OSError as exc:
        raise RayUnreachable(
            f"no Ray cluster answers at {address} ({exc.strerror or exc or 'timed out'}): check the host and port, "
            f"start one there (ray start --head), or give {setting('ray')} without an address for a local one"
        ) from None
    with connection:
        tls = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")  # a TLS handshake comes first: no probe
        heard = None if tls else _grpc_reply(connection)
    if heard is not None:
        raise RayUnreachable(
            f"something listens at {address}, but not a Ray cluster ({heard}): give the port of the cluster's "
            "GCS, as `ray start --head` prints it (6379 by default), or of its client server with ray://HOST:PORT "
            "(10001 by default); 8265 is the dashboard, which Ray cannot join"
        )


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def _grpc_reply(connection: socket.socket) -> str | None:
    """None when the server answers an HTTP/2 preface as gRPC (Ray's GCS and client server) do, with a SETTINGS
    frame; else what it did instead, in words. Ray's own connect would wait on anything else for minutes."""
    try:
        connection.settimeout(REACH_TIMEOUT)
        connection.sendall(HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            data = connection.recv(9 - len(head))
            if not data:
                return "it closed the connection" if not head else f"it answered {head[:40]!r}"
            head += data
    except TimeoutError:
        return f"no answer in {REACH_TIMEOUT:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    if head[3] == 0x04:  # a frame of type SETTINGS
        return None
    if head.startswith(b"HTTP/"):
        with contextlib.suppress(OSError):
            head += connection.recv(200)
        return "an HTTP server: " + head.split(b"\r\n", 1)[0].decode("latin-1")
    if head.lstrip().startswith(b"<"):
        return "an HTTP server: it answered with a web page"
    return f"it answered {head!r}"


def check_address(settings: RaySettings) -> str | None:
    """The address to join (auto: RAY_ADDRESS when set), checked within seconds (check_reachable); a caller
    checks it before loading a model, so that a wrong address fails at once."""
    address = settings.address
    if address == "auto" and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
    if address not in (None, "auto", "local"):
        check_reachable(address)
    return address


@contextlib.contextmanager
def ray_cluster(settings: RaySettings) -> Iterator[Cluster]:
    """Connect to (or start) the cluster for the duration; a process already connected (ray.init) stays so."""
    ray = import_ray()
    address = check_address(settings)
    started = not ray.is_initialized()
    if started:
        options = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address in (None, "local"):
            options["include_dashboard"] = False
        try:
            with _signals_deferred(ray) as pending:
                ray.init(address=address or "local", **options)
        except ConnectionError as exc:
            where = "RAY_ADDRESS is unset and no cluster runs on this machine" if address == "auto" else str(exc)
            raise RayUnreachable(
                f"no Ray cluster to join ({where}): start one (ray start --head), or give {setting('ray')} "
                "without an address for a local one"
            ) from None
        except Exception as exc:  # a version mismatch, a refused token: Ray's own words say why
            raise RayUnreachable(f"could not join the Ray cluster at {address or 'a new local one'}: {exc}") from None
        if pending:  # Ctrl-C or SIGTERM while it started: stop what it started, then unwind as they do
            _shut_down(ray, _python_handlers())
            raise KeyboardInterrupt
    restore = _errors_to_stderr(ray)
    try:
        yield Cluster(ray, settings)
    finally:
        if started:
            _shut_down(ray, _python_handlers())
        restore()  # after the shutdown: Ray's last notices (actors killed) still go to stderr


@contextlib.contextmanager
def _signals_deferred(ray) -> Iterator[list]:
    """Ctrl-C and SIGTERM held until ray.init returns (the list gets their numbers), so that Ray's processes are
    either all started, and ray.shutdown stops them, or none: ray.init would otherwise end by SIGTERM with
    sys.exit(15) part-way, leaving processes it had started that nothing tracks. Ray's C++ failure handler,
    which would turn a later SIGTERM into a stack dump and an abort (exit 134), is not installed in this process
    (its workers keep theirs)."""
    import signal
    import threading

    pending: list = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    utils = getattr(ray._private, "utils", None)
    constants = getattr(ray._private, "ray_constants", None)
    original = getattr(utils, "set_sigterm_handler", None)
    if original is not None:
        utils.set_sigterm_handler = lambda handler: None  # ray.init's own: sys.exit(15) on SIGTERM
    if constants is not None and hasattr(constants, "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"):
        constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    handlers = _python_handlers()
    for signum in handlers:
        signal.signal(signum, lambda number, frame: pending.append(number))
    try:
        yield pending
    finally:
        _restore_handlers(handlers)
        if original is not None:
            utils.set_sigterm_handler = original


def _python_handlers() -> dict:
    """This process's Python handlers of SIGINT and SIGTERM (the CLI's: both unwind as KeyboardInterrupt)."""
    import signal

    return {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}


def _restore_handlers(handlers: dict) -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for signum, handler in handlers.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(signum, handler)


def _shut_down(ray, handlers: dict) -> None:
    """ray.shutdown with Ctrl-C and SIGTERM held off until it is done (a second signal would leave Ray's
    processes behind), then the handlers as they were."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        ray.shutdown()
        return
    for signum in handlers:
        signal.signal(signum, signal.SIG_IGN)
    try:
        ray.shutdown()
    finally:
        _restore_handlers(handlers)


def _errors_to_stderr(ray):
    """Ray's driver prints its workers' error notices ("A worker died ...") on stdout, which is for data here:
    send them to stderr. Returns what undoes it."""
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(worker, "print_to_stdstream", None)
    if original is None:
        return lambda: None

    def to_stderr(data, *args, **kwargs):
        return original(dict(data, is_err=True), *args, **kwargs)

    worker.print_to_stdstream = to_stderr
    return lambda: setattr(worker, "print_to_stdstream", original)


@dataclass
class SampleResult:
    index: int
    keyed: list  # (key, (input index, line, text)), smallest key first
    seen: int
    skipped: dict
    examples: list


@dataclass
class ShardResult:
    index: int
    lines: list  # the shard's candidates, as select.state saves them (select.keep: keeper.lines(candidates=True))
    scored: int
    skipped: dict
    examples: list
    restarted: bool  # the actor had died and been restarted before this shard
    version: str


@dataclass
class Failure:
    index: int
    error: BaseException


def sample_shard(index: int, path: str, text_field: str, size: int, seed: int, cut: int, strict: bool):
    """A Ray task: one shard's bottom-k sample (select.sample), or the error that stopped it."""
    from gotd_stream.io.records import Skips
    from gotd_stream.select.sample import bottom_k_keyed

    skips = Skips(strict=strict, report=False, examples=[])
    try:
        keyed, seen = bottom_k_keyed([path], text_field, size, seed, cut, skips, first=index)
    except (SettingsMessage, OSError) as exc:
        return Failure(index, exc)
    return SampleResult(index, keyed, seen, dict(skips.counts), skips.examples)


class ShardScorer:
    """A Ray actor: loads the model (checked against the artifact) once, then scores whole shards."""

    def __init__(self, models: ModelSettings, plan, strict: bool, crash):
        import ray

        self.models, self.plan, self.strict, self.crash = models, plan, strict, crash
        self.featurizer = None
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed

    def score(self, index: int, path: str, shared: list):
        """One shard's result (ShardResult), or the error of its input (Failure). `shared` is [a reference to the
        artifact], fetched at the first shard only (Ray warns that constructor arguments in its object store may
        not survive an actor's restart)."""
        from gotd_stream.features import featurizer_for
        from gotd_stream.hf import pick_device
        from gotd_stream.io.records import Skips
        from gotd_stream.select.score import Counts, score_shard, scorers_of
        from gotd_stream.version import __version__

        restarted, self.restarted = self.restarted, False
        skips = Skips(strict=self.strict, report=False, examples=[])
        counts = Counts(skips=skips)
        try:
            if self.featurizer is None:
                import ray

                self.potentials = ray.get(shared[0])
                self.device = pick_device(self.models.device)
                student = self.plan.scoring(self.potentials) == "student"  # no model, no torch
                self.featurizer = False if student else featurizer_for(self.potentials, self.models)
                self.scorers = [] if student else scorers_of(self.potentials, self.device)
            scorers = [_dying(s) for s in self.scorers] if _crash_requested(self.crash, path) else self.scorers
            own = score_shard(path, self.featurizer, self.potentials, self.plan, counts, self.device, True, scorers)
            lines = list(own.lines(candidates=True))
        except (SettingsMessage, OSError) as exc:
            return Failure(index, exc)
        return ShardResult(index, lines, counts.scored, dict(skips.counts), skips.examples, restarted, __version__)


def _crash_requested(folder: str | None, path: str) -> bool:
    """The crash test's hook: a file named like the shard in `folder` is taken (once) as an order to die."""
    if not folder:
        return False
    try:
        os.unlink(os.path.join(folder, os.path.basename(path)))
    except FileNotFoundError:
        return False
    return True


def _dying(scorer):
    """A scorer that kills its process at its first window: a crash in the middle of a shard."""

    def die(rows):
        os._exit(1)

    return die


@dataclass
class Cluster:
    """A connected Ray cluster, and the two things gotd-stream runs on it."""

    ray: object
    settings: RaySettings
    shards_scored: int = 0
    actors_used: int = 0
    restarts: list = field(default_factory=list)

    def resources(self) -> dict:
        return self.ray.cluster_resources()

    def sample(self, paths, text_field, size, seed, cut, skips: Skips, bar=None):
        """A `sampler` for select.fit.fit: the same (texts, usable records read) as select.sample.bottom_k, drawn
        by one Ray task per shard and merged here (a bottom-k of bottom-k samples is exact)."""
        from gotd_stream.select.sample import BottomK, in_input_order

        task = self.ray.remote(sample_shard).options(num_cpus=1, max_retries=RETRIES)
        limit = max(2, 2 * int(self.resources().get("CPU", 1)))  # results in flight: each up to `size` texts
        pending = deque(enumerate(paths))
        running: dict = {}
        kept, seen = BottomK(size), 0
        try:
            while pending or running:
                while pending and len(running) < limit:
                    index, path = pending.popleft()
                    running[task.remote(index, path, text_field, size, seed, cut, skips.strict)] = index
                [ref], _ = self.ray.wait(list(running), num_returns=1)
                index = running.pop(ref)
                result = self._get(ref, paths[index], "sampling")
                if isinstance(result, Failure):
                    raise result.error  # the sample is read-only: nothing to save, so no reason to wait
                _report(skips, result.examples)
                skips.extend(result.skipped)  # past max_skipped: BadRecord, as in a local fit
                kept.extend(result.keyed)
                seen += result.seen
                if bar is not None:
                    bar.update(result.seen)
        finally:
            for other in running:  # after a failure (or Ctrl-C): the other shards' tasks are not needed
                self.ray.cancel(other)
        return in_input_order(kept), seen

    def score_unfinished(self, state, paths: list[str], potentials, models: ModelSettings, plan, counts, quiet=False):
        """Score the shards that `state` (a select.state.State) has not finished on the actor pool, saving each
        result there as it comes; the caller then merges the folder as a local run does."""
        from gotd_stream.io.streams import stat_input

        todo = [
            (i, path, stat_input(path))
            for i, path in enumerate(paths)
            if state.finished(path) is None and state.known_failure(path) is None
        ]
        if todo:
            self._score_on_actors(todo, paths, state, potentials, models, plan, counts, quiet)
        counts.reused -= len(todo)  # scored now, on Ray: not taken from an earlier run
        self.shards_scored += len(todo)

    def _pool(self, wanted: int, potentials, models, plan, strict: bool) -> list:
        resources = self.resources()
        has_gpus = resources.get("GPU", 0) > 0
        gpus = self.settings.gpus if self.settings.gpus is not None else (1.0 if has_gpus else 0.0)
        if self.settings.actors is not None:
            actors = self.settings.actors
        elif gpus > 0:
            actors = max(1, int(resources.get("GPU", 0) // gpus))
        else:
            actors = max(1, int(resources.get("CPU", 1)))
        actors = min(actors, wanted)
        if gpus > resources.get("GPU", 0):
            raise UsageProblem(
                f"{setting('ray_gpus')} {gpus:g}: the Ray cluster has {resources.get('GPU', 0):g} GPUs, so no "
                "actor could start; leave it out"
            )
        options = {"num_cpus": 1, "num_gpus": gpus, "max_restarts": RETRIES, "max_task_retries": RETRIES}
        remote = self.ray.remote(ShardScorer).options(**options)
        self._shared = [self.ray.put(potentials)]  # held here for as long as the actors need it
        crash = os.environ.get(CRASH_HOOK)
        log.info(
            f"ray: {actors} scoring actor{'s' if actors > 1 else ''} ({gpus:g} GPU each) for {wanted} shard"
            f"{'s' if wanted > 1 else ''}"
        )
        self.actors_used = actors
        return [remote.remote(models, plan, strict, crash) for _ in range(actors)]

    def _score_on_actors(self, todo, paths, state, potentials, models, plan, counts, quiet) -> None:
        """One shard per actor at a time; a result is saved to the state as it comes; after the first failure no
        new shard starts, the shards in flight are saved, and the failure of the earliest shard is raised."""
        from gotd_stream.io.streams import CorruptInput
        from gotd_stream.progress import progress
        from gotd_stream.version import __version__

        idle = self._pool(len(todo), potentials, models, plan, counts.skips.strict)
        stats = {i: stat for i, _, stat in todo}
        pending = deque(i for i, _, _ in todo)
        running: dict = {}
        failures: dict[int, BaseException] = {}
        try:
            with progress(quiet, "shards", total=len(todo), unit=" shards") as bar:
                while running or (pending and not failures):
                    while idle and pending and not failures:
                        actor, index = idle.pop(), pending.popleft()
                        running[actor.score.remote(index, paths[index], self._shared)] = (index, actor)
                    if not running:
                        failures[pending[0]] = WorkerLost(
                            f"{paths[pending[0]]}: every Ray actor died (each restarted {RETRIES} times); "
                            "the shards finished so far are saved: run again to go on"
                        )
                        break
                    [ref], _ = self.ray.wait(list(running), num_returns=1)
                    index, actor = running.pop(ref)
                    result = self._get(ref, paths[index], "scoring")
                    if isinstance(result, Failure) and isinstance(result.error, CorruptInput) and state.keep_going:
                        state.failed(paths[index], stats[index], result.error)  # recorded; the others go on
                        idle.append(actor)
                        bar.update(1)
                        continue
                    if isinstance(result, Failure):
                        failures[index] = result.error
                        if not isinstance(result.error, WorkerLost):
                            idle.append(actor)
                        continue
                    idle.append(actor)
                    if result.version != __version__:
                        failures[index] = RuntimeProblem(
                            f"the Ray workers run gotd-stream {result.version}, this driver {__version__}: install "
                            "the same version on every node"
                        )
                        continue
                    if result.restarted:
                        self.restarts.append(paths[index])
                        log.warning(
                            f"{paths[index]}: the Ray actor scoring it had died; Ray restarted it and the shard "
                            "was scored again from its start"
                        )
                    _report(counts.skips, result.examples)
                    state.save_lines(paths[index], stats[index], result.lines, result.scored, result.skipped)
                    bar.update(1)
        finally:
            for _, actor in running.values():
                self.ray.kill(actor)
            for actor in idle:
                self.ray.kill(actor)
        if failures:
            raise failures[min(failures)]

    def _get(self, ref, path: str, what: str):
        """A task's result; a worker that died past its retries is a Failure naming the shard."""
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.RayTaskError as exc:  # a bug, not the input: its own exception, with its traceback
            if isinstance(getattr(exc, "cause", None), ImportError):
                raise RuntimeProblem(f"{path}: a Ray worker {what} it failed: {exc.cause}; {NOT_INSTALLED}") from None
            raise exc.as_instanceof_cause() from None
        except (exceptions.RayActorError, exceptions.WorkerCrashedError, exceptions.ObjectLostError) as exc:
            if "No module named" in str(exc):  # the actor could not even be created
                raise RuntimeProblem(f"{path}: no Ray actor could start ({NOT_INSTALLED})") from None
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Failure(
                -1,
                WorkerLost(
                    f"{path}: the Ray worker {what} it died, and Ray had already retried it {RETRIES} times "
                    f"({reason}); the shards finished so far are saved: run again to go on"
                ),
            )


@dataclass
class OnRay:
    """The executor on a Ray cluster (select.executors): the unfinished shards on the actor pool, each result
    saved to a state folder (`directory`, or a temporary one) as it comes, then the folder merged here."""

    cluster: Cluster
    models: ModelSettings
    directory: str | None = None
    wait: bool = False
    state: object = field(default=None, init=False)  # after run, with a folder: its State (failures_of)

    def run(self, paths, featurizer, artifact, plan, counts, device="cpu", quiet=False):
        from gotd_stream.select.executors import check_files

        check_files(paths, setting("ray_address"))
        if self.directory is not None:
            return self._run(self.directory, paths, featurizer, artifact, plan, counts, device, quiet)
        with tempfile.TemporaryDirectory(prefix="gotd-ray-") as folder:  # a damaged shard fails the run
            return self._run(folder, paths, featurizer, artifact, plan, counts, device, quiet, keep_going=False)

    def _run(self, folder, paths, featurizer, artifact, plan, counts, device, quiet, keep_going=True):
        from gotd_stream.select.executors import Resumable

        def elsewhere(state):
            self.cluster.score_unfinished(state, paths, artifact, self.models, plan, counts, quiet)

        resumable = Resumable(folder, self.wait, keep_going)
        keeper = resumable.run(paths, featurizer, artifact, plan, counts, device, quiet, elsewhere)
        self.state = resumable.state
        return keeper


def _report(skips: Skips, examples: list) -> None:
    """A worker's first skipped records, logged here as a local run logs its own (the first few in all)."""
    for name, lineno, reason, detail in examples:
        skips.report_one(f"{name}:{lineno}: {reason}{': ' + detail if detail else ''}")


def running_on(cluster: Cluster) -> str:
    """For a summary line: what ran on Ray."""
    retried = f", {len(cluster.restarts)} retried after a worker died" if cluster.restarts else ""
    return f"{cluster.shards_scored} shards on {cluster.actors_used} Ray actors{retried}"
