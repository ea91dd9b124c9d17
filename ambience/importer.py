"""Bulk import: compute one service's features for a whole folder, straight into its store.

``ambience import SERVICE DIR`` is for a gallery that already holds many photos: it walks the
folder, spreads decoding and feature extraction over worker processes (joblib) and writes the
results through the same :class:`FeatureStore` code the service uses, so the store's metadata
check applies and the records land in the store's change log.

Safety with a running service: the import may run while the service serves. LMDB serialises the
two writers, and the service's maintenance thread replays the change log every
``sync_interval_s``, so imported ids become searchable without a restart. Two imports into the
same data dir at once are refused (a lock file), because both would hand out the same new ids.

Work split: cheap features (``batched_extract = False``) run ``extract`` in the workers, which
return the stored bytes. Model services (``batched_extract = True``) run only ``prepare``
(decoding, preprocessing) in the workers; the importing process runs ``extract_batch`` on
batches with its one loaded model.

Ids: parsed from file names (``123.jpg``) or handed out sequentially; sequential ids are
recorded in ``<data_dir>/import_ids.csv`` before any record is written, so a re-run gives the
same file the same id. Resumable: ids already in the store are skipped before any decoding.
Files that fail (unreadable, too large, not a usable image) are reported in the summary and in
``<data_dir>/import_failures.csv`` and the run goes on.

On a Dask cluster (``--scheduler ADDRESS``, :func:`run_import` with ``scheduler=``): the chunks go
to the cluster's workers instead of local processes. Workers read the files from a path they share
with this machine (the same absolute path), or, with ``send_bytes``, receive each file's bytes from
this process. Workers run the whole extraction, model services included (each worker loads the
model once), and return the stored bytes; this process keeps the id mapping, the progress, the
failure list and every store write, so resuming and the report work as for a local import. With
the postgres store, the records land in the shared database that every replica follows.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from joblib import Parallel, delayed
from tqdm import tqdm

from services.common.features.feature import FeatureService
from services.common.features.storage import Store, open_store
from services.common.images import ImageError
from services.common.media.formats import MEDIA_SUFFIXES
from services.common.settings import ServiceSettings
from services.registry import UnknownFeatureError, new_feature

#: File name suffixes the import looks at (everything the decode path accepts: photos, RAW, videos).
IMAGE_SUFFIXES = MEDIA_SUFFIXES
IDS_CSV = "import_ids.csv"
FAILURES_CSV = "import_failures.csv"
LOCK_FILE = "import.lock"

#: ImageError status -> the reason shown in the report.
_REASONS = {413: "too large", 415: "unsupported format"}


class ImportRefused(RuntimeError):
    """The import cannot run at all (unknown service, data dir busy): a message for the user."""


@dataclass(frozen=True)
class Failure:
    path: str
    image_id: int | None
    reason: str  # unreadable | too large | unsupported format | bad image | bad file name | ...
    detail: str


@dataclass
class ImportReport:
    service: str
    folder: Path
    data_dir: Path
    jobs: int
    files: int = 0
    added: int = 0
    already_stored: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    failures_csv: Path | None = None
    scheduler: str | None = None  # the Dask scheduler's address, for a cluster import

    @property
    def images_per_s(self) -> float:
        return self.added / self.seconds if self.seconds > 0 else 0.0

    def summary(self, show: int = 20) -> str:
        lines = [
            f"ambience import {self.service}: {self.files} image files in {self.folder}",
            f"  added           {self.added:>8}",
            f"  already stored  {self.already_stored:>8}",
            f"  failed          {len(self.failures):>8}",
        ]
        if self.failures:
            kinds = Counter(f.reason for f in self.failures)
            lines.append("    " + ", ".join(f"{reason}: {n}" for reason, n in sorted(kinds.items())))
            lines.append(f"    every failure is listed in {self.failures_csv}")
        where = f" on the Dask cluster {self.scheduler}" if self.scheduler else ""
        lines.append(
            f"  {self.seconds:.1f} s, {self.images_per_s:.1f} images/s with {self.jobs} job(s){where}; "
            f"store: {self.data_dir}"
        )
        if self.failures:
            lines.append("failed files:")
            for failure in sorted(self.failures, key=lambda f: f.path)[:show]:
                lines.append(f"  {failure.path}: [{failure.reason}] {failure.detail}")
            if len(self.failures) > show:
                lines.append(f"  ... and {len(self.failures) - show} more")
        return "\n".join(lines)


# -- the service's classes ----------------------------------------------------------------------


def service_classes(name: str) -> tuple[type[FeatureService], type[ServiceSettings]]:
    """The FeatureService subclass and settings class of a registered service (its descriptor's
    ``feature`` and ``settings``)."""
    feature = build_feature(name)
    return type(feature), type(feature.settings)


def build_feature(name: str, data_dir: Path | None = None) -> FeatureService:
    """The service's feature object, not loaded, with settings from the environment (``data_dir``
    overrides); ImportRefused for a service that keeps no FeatureStore."""
    try:
        return new_feature(name, data_dir)
    except UnknownFeatureError as exc:
        raise ImportRefused(f"{exc}, so ambience import cannot fill it") from exc


# -- files and ids ---------------------------------------------------------------------------------


def scan_folder(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, following symlinks, hidden entries skipped),
    in a stable order."""
    found = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of folders walked: symlink loops end
    for root, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            Path(root) / f
            for f in files
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES
        )
    return sorted(found)


def file_key(path: Path) -> str:
    """How a file is named in the id mapping: its absolute path, symlinks kept as they are."""
    return os.path.abspath(path)


def ids_from_filenames(paths: list[Path], max_image_id: int) -> tuple[list[tuple[int, str]], list[Failure]]:
    """``123.jpg`` -> 123. Names that are not an id, and a second file for one id, are failures."""
    assigned: list[tuple[int, str]] = []
    failures: list[Failure] = []
    owner: dict[int, str] = {}
    for path in paths:
        key = file_key(path)
        stem = path.stem
        if not stem.isdigit():
            failures.append(Failure(key, None, "bad file name", f"{path.name!r} is not <image id>.<ext>"))
            continue
        if int(stem) >= max_image_id:
            failures.append(
                Failure(key, None, "bad file name", f"{stem} is not an image id (< {max_image_id})")
            )
            continue
        image_id = int(stem)
        if image_id in owner:
            failures.append(
                Failure(key, image_id, "duplicate id", f"image_id {image_id} is also {owner[image_id]}")
            )
            continue
        owner[image_id] = key
        assigned.append((image_id, key))
    return assigned, failures


class IdMapping:
    """``image_id,path`` rows in a CSV next to the data: which file got which sequential id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.by_path: dict[str, int] = {}
        if path.exists():
            with path.open(newline="", encoding="utf-8") as f:
                for row in csv.reader(f):
                    # The header, and a last row cut short by a crash, are skipped.
                    if len(row) == 2 and row[0].isdigit():
                        self.by_path.setdefault(row[1], int(row[0]))

    def assign(
        self, keys: list[str], used: set[int], start_id: int | None, max_image_id: int
    ) -> tuple[list[tuple[int, str]], list[Failure]]:
        """Ids for ``keys``: the recorded one, else the next id >= start not used by anything.

        New rows are appended (and fsynced) before returning, so they hold before any write.
        """
        taken = used | set(self.by_path.values())
        next_id = start_id if start_id is not None else max(taken, default=0) + 1
        assigned: list[tuple[int, str]] = []
        failures: list[Failure] = []
        new_rows: list[tuple[int, str]] = []
        for key in keys:
            image_id = self.by_path.get(key)
            if image_id is None:
                while next_id in taken:
                    next_id += 1
                if next_id >= max_image_id:
                    failures.append(Failure(key, None, "no id left", f"ids must be < {max_image_id}"))
                    continue
                image_id = next_id
                taken.add(image_id)
                self.by_path[key] = image_id
                new_rows.append((image_id, key))
            assigned.append((image_id, key))
        if new_rows:
            self._append(new_rows)
        return assigned, failures

    def _append(self, rows: list[tuple[int, str]]) -> None:
        size = self.path.stat().st_size if self.path.exists() else 0
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if size == 0:
            writer.writerow(["image_id", "path"])
        else:
            with self.path.open("rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # a row cut short by a crash: end it, it is skipped on load
                    buf.write("\n")
        writer.writerows(rows)
        with self.path.open("a", newline="", encoding="utf-8") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())


# -- the work done in worker processes --------------------------------------------------------------

_WORKER_FEATURES: dict[str, FeatureService] = {}


def _feature_key(feature_cls: type[FeatureService], settings: ServiceSettings) -> str:
    return f"{feature_cls.__module__}.{feature_cls.__qualname__}:{settings.model_dump_json()}"


def _worker_feature(
    feature_cls: type[FeatureService], settings: ServiceSettings, prepare_only: bool
) -> FeatureService:
    """One feature object per worker process. Local workers of batched (model) services only run
    ``prepare``, so the model is not loaded there."""
    key = _feature_key(feature_cls, settings)
    feature = _WORKER_FEATURES.get(key)
    if feature is None:
        feature = feature_cls(settings)
        if not prepare_only:
            feature.load()
        _WORKER_FEATURES[key] = feature
    return feature


#: One processed file: (image_id, path, stored bytes or prepared input, (reason, detail) or None).
Outcome = tuple[int, str, Any, tuple[str, str] | None]


def _too_large(size: int, limit: int) -> tuple[str, str]:
    return ("too large", f"file is {size} bytes, more than the limit of {limit}")


def read_file(path: str, limit: int) -> bytes | tuple[str, str]:
    """The file's bytes, or the (reason, detail) of why it cannot be imported."""
    try:
        size = os.stat(path).st_size
        if size > limit:
            return _too_large(size, limit)
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        return ("unreadable", f"{exc.strerror or exc}")


#: A chunk of work: (image_id, path) to read in the worker, or (image_id, path, bytes or the
#: (reason, detail) of a failed read) when the importing process read the file (``send_bytes``).
ChunkItem = tuple[int, str] | tuple[int, str, bytes | tuple[str, str]]


def _process_chunk(
    feature_cls: type[FeatureService],
    settings: ServiceSettings,
    batched: bool,
    chunk: list[ChunkItem],
    extract_batched: bool = False,
) -> list[Outcome]:
    """Decode (and extract) a chunk of files. ``extract_batched``: a model service's worker runs
    its model too (cluster workers), instead of returning prepared inputs."""
    feature = _worker_feature(feature_cls, settings, batched and not extract_batched)
    limit = settings.max_upload_bytes
    out: list[Outcome] = []
    for item in chunk:
        image_id, path = item[0], item[1]
        data = item[2] if len(item) == 3 else read_file(path, limit)  # type: ignore[misc]
        if isinstance(data, tuple):
            out.append((image_id, path, None, data))
            continue
        if len(data) > limit:
            out.append((image_id, path, None, _too_large(len(data), limit)))
            continue
        try:
            value = feature.prepare(data) if batched else feature.extract(data)
        # Exceptions stay here (ImageError does not survive pickling); a bug on one odd file
        # must not end a long import.
        except Exception as exc:
            out.append((image_id, path, None, _error_reason(exc)))
            continue
        out.append((image_id, path, value, None))
    if batched and extract_batched:
        return _extract_prepared(feature, out)
    return out


def _extract_prepared(feature: FeatureService, outcomes: list[Outcome]) -> list[Outcome]:
    """Prepared inputs -> stored bytes with the model, in batches; on an error, item by item to
    find the culprit."""
    done: list[Outcome] = [o for o in outcomes if o[3] is not None]
    ready = [o for o in outcomes if o[3] is None]
    size = max(1, feature.import_batch_size)
    for start in range(0, len(ready), size):
        done.extend(_extract_batch(feature, ready[start : start + size]))
    return done


def _extract_batch(feature: FeatureService, batch: list[Outcome]) -> list[Outcome]:
    try:
        values = feature.extract_batch([prepared for _, _, prepared, _ in batch])
    except Exception as exc:
        if len(batch) > 1:
            return [outcome for item in batch for outcome in _extract_batch(feature, [item])]
        image_id, path, _, _ = batch[0]
        return [(image_id, path, None, _error_reason(exc))]
    return [
        (image_id, path, value, None) for (image_id, path, _, _), value in zip(batch, values, strict=True)
    ]


def _error_reason(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, ImageError):
        return (_REASONS.get(exc.status, "bad image"), exc.message)
    return ("error", f"{type(exc).__name__}: {exc}")


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- the import -------------------------------------------------------------------------------------


class _FailureLog:
    """Failures go to the CSV as they happen, so a killed run still leaves its list."""

    def __init__(self, path: Path, report: ImportReport) -> None:
        self.report = report
        self._file: TextIO = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(["path", "image_id", "reason", "detail"])

    def add(self, failures: Iterable[Failure]) -> None:
        for failure in failures:
            self.report.failures.append(failure)
            self._writer.writerow(
                [
                    failure.path,
                    "" if failure.image_id is None else failure.image_id,
                    failure.reason,
                    failure.detail,
                ]
            )
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _ImportLock:
    """Exclusive per data dir: two imports would hand out the same sequential ids."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._file = self.path.open("a")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise ImportRefused(
                f"another ambience import is writing to {data_dir}; wait for it to finish"
            ) from None

    def release(self) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def run_import(
    feature: FeatureService,
    folder: Path,
    *,
    ids_from_names: bool = False,
    start_id: int | None = None,
    jobs: int = 1,
    chunk_size: int = 16,
    progress: bool = True,
    out: TextIO | None = None,
    scheduler: str | None = None,
    send_bytes: bool = False,
    scheduler_timeout_s: float = 20.0,
) -> ImportReport:
    """Import every image file under ``folder`` into the store of ``feature``'s service.

    ``feature`` is built but not loaded; it is loaded here once (its metadata may depend on the
    model). ``scheduler``: the address of a Dask scheduler whose workers do the extraction
    (``jobs`` is then ignored); ``send_bytes``: the workers get the files' bytes from here instead
    of reading the same path; ``scheduler_timeout_s``: how long to keep trying to reach the
    scheduler. Raises ImportRefused for a folder, data dir or scheduler it cannot
    use, StoreMismatchError when the data was built with another configuration.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImportRefused(f"{folder} is not a folder")
    if ids_from_names and start_id is not None:
        raise ImportRefused("--ids-from-filenames and --start-id exclude each other")
    if jobs < 1 or chunk_size < 1:
        raise ImportRefused("--jobs and --chunk-size must be at least 1")
    if send_bytes and scheduler is None:
        raise ImportRefused("--send-bytes needs --scheduler (local workers read the files themselves)")
    data_dir = feature.settings.resolved_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    report = ImportReport(feature.name, folder, data_dir, jobs, scheduler=scheduler)
    started = time.monotonic()
    lock = _ImportLock(data_dir)
    try:
        cluster = (
            DaskWorkers.connect(scheduler, send_bytes, scheduler_timeout_s) if scheduler is not None else None
        )
        try:
            feature.load()
            store = open_store(feature.settings.store, feature.name, data_dir, feature.metadata())
            try:
                if cluster is not None:
                    report.jobs = cluster.threads()
                run = _Run(store, feature, report, jobs, chunk_size, progress, out or sys.stderr, cluster)
                run.execute(folder, ids_from_names, start_id)
            finally:
                store.close()
        finally:
            if cluster is not None:
                cluster.close()
    finally:
        lock.release()
    report.seconds = time.monotonic() - started
    return report


@dataclass
class _Run:
    store: Store
    feature: FeatureService
    report: ImportReport
    jobs: int
    chunk_size: int
    progress: bool
    out: TextIO
    cluster: DaskWorkers | None = None

    def execute(self, folder: Path, ids_from_names: bool, start_id: int | None) -> None:
        report, feature = self.report, self.feature
        paths = scan_folder(folder)
        report.files = len(paths)
        report.failures_csv = report.data_dir / FAILURES_CSV
        self.failures = _FailureLog(report.failures_csv, report)
        try:
            stored = set(self.store.ids())
            if ids_from_names:
                assigned, bad = ids_from_filenames(paths, feature.max_image_id)
            else:
                mapping = IdMapping(report.data_dir / IDS_CSV)
                keys = [file_key(p) for p in paths]
                assigned, bad = mapping.assign(keys, stored, start_id, feature.max_image_id)
            self.failures.add(bad)
            todo = [(image_id, path) for image_id, path in assigned if image_id not in stored]
            report.already_stored = len(assigned) - len(todo)
            where = f" on the Dask cluster {report.scheduler}" if report.scheduler else ""
            print(
                f"ambience import {feature.name}: {len(paths)} image files, {report.already_stored} "
                f"already stored, {len(todo)} to do, {report.jobs} job(s){where} -> {report.data_dir}",
                file=self.out,
            )
            if todo:
                self.extract_and_store(todo)
        finally:
            self.failures.close()

    def extract_and_store(self, todo: list[tuple[int, str]]) -> None:
        feature = self.feature
        feature_cls, settings, batched = type(feature), feature.settings, feature.batched_extract
        # With one job joblib runs the chunks in this process: reuse the loaded feature object.
        _WORKER_FEATURES[_feature_key(feature_cls, settings)] = feature
        bar = tqdm(
            total=len(todo),
            desc=f"import {feature.name}",
            unit="img",
            file=self.out,
            disable=not self.progress,
            mininterval=0.5,
            dynamic_ncols=True,
        )
        pending: list[tuple[int, str, Any]] = []  # prepared inputs waiting for a model batch
        batch_size = feature.import_batch_size
        # Small folders of big photos: smaller chunks, so every worker gets several tasks.
        chunk_size = max(1, min(self.chunk_size, len(todo) // (4 * self.report.jobs)))
        chunks = _chunks(todo, chunk_size)
        if self.cluster is not None:
            results = self.cluster.run(feature_cls, settings, batched, chunks)
            batched = False  # the cluster's workers ran the model: outcomes are stored bytes
        else:
            results = self._local(feature_cls, settings, batched, chunks)
        try:
            for outcomes in results:
                self.failures.add(
                    Failure(path, image_id, err[0], err[1])
                    for image_id, path, _, err in outcomes
                    if err is not None
                )
                ok = [(image_id, path, value) for image_id, path, value, err in outcomes if err is None]
                if batched:
                    pending.extend(ok)
                    while len(pending) >= batch_size:
                        self.run_batch(pending[:batch_size])
                        del pending[:batch_size]
                else:
                    self.write(ok)
                bar.update(len(outcomes))
                bar.set_postfix(failed=len(self.report.failures), refresh=False)
            if pending:
                self.run_batch(pending)
        finally:
            bar.close()

    def _local(
        self,
        feature_cls: type[FeatureService],
        settings: ServiceSettings,
        batched: bool,
        chunks: Iterator[list[tuple[int, str]]],
    ) -> Iterator[list[Outcome]]:
        """The chunks' outcomes from joblib worker processes on this machine, as they finish."""
        tasks = (delayed(_process_chunk)(feature_cls, settings, batched, chunk) for chunk in chunks)
        with Parallel(n_jobs=self.jobs, return_as="generator_unordered") as parallel:
            yield from parallel(tasks)

    def write(self, items: list[tuple[int, str, bytes]]) -> None:
        """One durable store transaction for a chunk of results."""
        if not items:
            return
        added = self.store.add_many([(image_id, value) for image_id, _, value in items])
        self.report.added += sum(added)
        self.failures.add(
            Failure(
                path, image_id, "id exists", f"image_id {image_id} was stored by another writer meanwhile"
            )
            for (image_id, path, _), ok in zip(items, added, strict=True)
            if not ok
        )

    def run_batch(self, batch: list[tuple[int, str, Any]]) -> None:
        """The model on a batch of prepared inputs; on an error, item by item to find the culprit."""
        outcomes = _extract_batch(
            self.feature, [(image_id, path, prepared, None) for image_id, path, prepared in batch]
        )
        self.failures.add(
            Failure(path, image_id, err[0], err[1]) for image_id, path, _, err in outcomes if err is not None
        )
        self.write([(image_id, path, value) for image_id, path, value, err in outcomes if err is None])


class DaskWorkers:
    """The workers of a Dask distributed cluster, fed chunks a few at a time.

    At most ``2 x threads`` chunks are in flight: enough to keep every worker busy, while the bytes
    of a ``send_bytes`` import are read no further ahead than that.
    """

    def __init__(self, client: Any, send_bytes: bool) -> None:
        self.client = client
        self.send_bytes = send_bytes

    @classmethod
    def connect(cls, address: str, send_bytes: bool, timeout_s: float = 20.0) -> DaskWorkers:
        try:
            from distributed import Client
        except ImportError:
            raise ImportRefused("--scheduler needs Dask distributed: pip install 'ambience[scale]'") from None
        try:
            client = Client(address, timeout=f"{timeout_s}s")
        except (OSError, TimeoutError) as exc:
            raise ImportRefused(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        workers = cls(client, send_bytes)
        if workers.threads() == 0:
            try:
                client.wait_for_workers(1, timeout=30)
            except TimeoutError:
                client.close()
                raise ImportRefused(f"the Dask scheduler at {address} has no workers") from None
        return workers

    def threads(self) -> int:
        return sum(self.client.nthreads().values())

    def run(
        self,
        feature_cls: type[FeatureService],
        settings: ServiceSettings,
        batched: bool,
        chunks: Iterator[list[tuple[int, str]]],
    ) -> Iterator[list[Outcome]]:
        """The chunks' outcomes as they finish. A chunk whose workers died (Dask retries a task on
        another worker first) comes back as failures, so the run goes on and a re-run retries it."""
        from distributed import as_completed

        limit = settings.max_upload_bytes
        window = max(2, 2 * self.threads())
        in_flight: dict[Any, list[tuple[int, str]]] = {}
        finished = as_completed()

        def submit_next() -> bool:
            chunk = next(chunks, None)
            if chunk is None:
                return False
            work: list[ChunkItem] = (
                [(image_id, path, read_file(path, limit)) for image_id, path in chunk]
                if self.send_bytes
                else list(chunk)
            )
            future = self.client.submit(
                _process_chunk, feature_cls, settings, batched, work, True, pure=False
            )
            in_flight[future] = chunk
            finished.add(future)
            return True

        for _ in range(window):
            if not submit_next():
                break
        for future in finished:
            chunk = in_flight.pop(future)
            try:
                outcomes: list[Outcome] = future.result()
            except Exception as exc:  # KilledWorker, a worker that cannot import the service...
                reason = ("worker failed", f"{type(exc).__name__}: {exc}")
                outcomes = [(image_id, path, None, reason) for image_id, path in chunk]
            future.release()
            submit_next()
            yield outcomes

    def close(self) -> None:
        self.client.close()
