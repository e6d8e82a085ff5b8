"""``python -m bench [--smoke] [--voices auto|demo|tiny] [--old-rev REV] [--output FILE]``: measure
the service against the in-process floor and print markdown tables (see :mod:`bench`)."""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.paragraphs import EDITED, Paragraphs, shape
from bench.stack import Stack, Streamed, WorkerStart, code_at, self_contained
from common.config import REPO_ROOT
from common.repository import scan

_LOGGER = logging.getLogger("bench")

SUBJECTS = ["오늘은", "내일 아침에는", "우리 팀은", "이 노래는", "다음 주에는", "그 영화는"]
OBJECTS = ["새로운 계획을", "맛있는 점심을", "긴 편지를", "작은 선물을", "오래된 사진을"]
VERBS = ["준비합니다", "함께 나눕니다", "천천히 읽습니다", "다시 확인합니다", "정리해 둡니다"]


@dataclass(frozen=True)
class Plan:
    """How many texts each phase uses."""

    short: int
    long: int
    accepted: int
    junk: int
    distinct: int
    copies: int
    scaling: int
    paragraphs: int
    """Repetitions of the long-text measurements, each on paragraphs new to the cache."""


FULL = Plan(short=20, long=6, accepted=20, junk=12, distinct=20, copies=5, scaling=16, paragraphs=6)
SMOKE = Plan(short=4, long=2, accepted=4, junk=3, distinct=4, copies=5, scaling=4, paragraphs=1)

WHOLE = "the whole text in-process in one go (today's single job; a lower bound of it)"
"""The reference of a long text's total: its sentences through the synthesize stage in one call,
as one job made a text before texts were made sentence by sentence, without queue or storage."""

OLD_REV = "e8e783f"
"""The last revision before texts were made sentence by sentence: its short-text overhead is
measured in the same run, to compare with."""


@dataclass
class Row:
    measure: str
    result: str
    floor: str = ""
    versus: str = ""
    target: str = ""
    met: bool | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    long_rows: list[tuple[int, Row]] = field(default_factory=list)
    """The long-text section's table (value, reference, ratio), each row with its place."""
    long_notes: list[str] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.rows.append(Row(*args, **kwargs))

    def add_long(self, place: int, *args: Any, **kwargs: Any) -> None:
        """A row of the long-text table, shown at ``place`` whatever order the phases run in."""
        self.long_rows.append((place, Row(*args, **kwargs)))

    def markdown(self) -> str:
        lines = [*self.notes, "", *table(self.rows, "result", "in-process floor", "vs floor")]
        if self.long_rows:
            rows = [row for _, row in sorted(self.long_rows, key=lambda placed: placed[0])]
            lines += ["", "### Long text", "", *self.long_notes, ""]
            lines += table(rows, "value", "reference", "ratio")
        return "\n".join(lines)


def table(rows: list[Row], result: str, floor: str, versus: str) -> list[str]:
    """Rows as a markdown table, their columns headed as given."""
    lines = [
        f"| measure | {result} | {floor} | {versus} | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.measure} | {r.result} | {r.floor} | {r.versus} | {r.target} | {met} |")
    return lines


class Texts:
    """Distinct Korean texts, new to the cache on every run (the run id is part of each)."""

    def __init__(self) -> None:
        self.run = random.randrange(1000, 9000)
        self.count = 0

    def sentence(self) -> str:
        self.count += 1
        i = self.count
        return (
            f"{SUBJECTS[i % 6]} {self.run}번 실험의 {i}번째 문장으로 "
            f"{OBJECTS[i % 5]} {VERBS[(i // 5) % 5]}."
        )

    def take(self, n: int, sentences: int = 1) -> list[str]:
        return [" ".join(self.sentence() for _ in range(sentences)) for _ in range(n)]


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# ----------------------------------------------------------------------------------- the floor


class Floor:
    """The voices loaded in this process: what a warm synthesizer takes for a text, and what a
    voice costs in memory."""

    def __init__(self, voice_dir: Path, member: int, threads: int) -> None:
        import psutil
        import torch

        from common.normalize import Normalizer
        from worker.voices import load_voice

        torch.set_num_threads(threads)
        import TTS.utils.synthesizer  # noqa: F401 - imported first, so it is not counted per voice

        process = psutil.Process()
        self.rss_per_voice: list[float] = []
        self.voices = {}
        for member_id, spec in scan(voice_dir).voices.items():
            before = process.memory_info().rss
            try:
                self.voices[member_id] = load_voice(spec, "cpu")
            except Exception:
                continue
            self.rss_per_voice.append((process.memory_info().rss - before) / 2**20)
        self.voice = self.voices[member]
        self.normalizer = Normalizer()
        self.normalizer.warm_up()

    def seconds(self, texts: list[str], pause: float) -> list[float]:
        """Text in, waveform out, for each text: the g2pK normalizer and the Coqui Glow-TTS +
        vocoder calls (the worker's normalize and synthesize stages), nothing else."""
        return [self.measure(text, pause)[0] for text in texts]

    def measure(self, text: str, pause: float) -> tuple[float, float]:
        """Wall and CPU seconds of :meth:`seconds` for one text. CPU time is what the work
        costs whatever else the machine runs; wall time is what a client waits."""
        from worker.synthesis import normalize, synthesize

        started, cpu = time.perf_counter(), time.process_time()
        synthesize(self.voice, normalize(self.normalizer, text, self.voice), pause)
        return time.perf_counter() - started, time.process_time() - cpu

    def normalizing(self, text: str) -> float:
        """Seconds of the normalize stage alone (g2pK) for ``text``."""
        from worker.synthesis import normalize

        started = time.perf_counter()
        normalize(self.normalizer, text, self.voice)
        return time.perf_counter() - started


# ----------------------------------------------------------------------------------- phases


@dataclass
class Paired:
    """Per text: the client's wait, the in-process floor just before, and the model time the
    worker recorded for that very job."""

    texts: list[str] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    model: list[float] = field(default_factory=list)
    pipeline: list[float] = field(default_factory=list)
    normalize: list[float] = field(default_factory=list)
    """The normalize stage alone in-process, per text (measured when comparing revisions)."""

    @property
    def overhead(self) -> list[float]:
        return [e - m for e, m in zip(self.e2e, self.model, strict=True)]

    @property
    def in_worker(self) -> list[float]:
        """Lookup, encode and store: the worker's pipeline minus the model."""
        return [p - m for p, m in zip(self.pipeline, self.model, strict=True)]

    def add(
        self,
        text: str,
        floor: float,
        e2e: float,
        model: float,
        pipeline: float,
        normalize: float = 0.0,
    ) -> None:
        self.texts.append(text)
        self.floor.append(floor)
        self.e2e.append(e2e)
        self.model.append(model)
        self.pipeline.append(pipeline)
        self.normalize.append(normalize)


@dataclass
class Baseline:
    """The service at an earlier git revision, run beside this one to compare with."""

    rev: str
    stack: Stack
    runs: Paired = field(default_factory=Paired)


def sequential(
    stack: Stack,
    floor: Floor,
    member: int,
    texts: list[str],
    pause: float,
    report: Report,
    old: Baseline | None = None,
) -> Paired:
    """For each new text: the floor in-process, then POST ?wait until its URL comes back. With
    ``old``, the same text (new to its storage too) also goes to the earlier revision, every
    other time first, so that neither is always the one right after the floor."""
    out = Paired()
    for index, text in enumerate(texts):
        normalize_s = floor.normalizing(text) if old else 0.0
        floor_s = floor.seconds([text], pause)[0]
        order = [(stack, out)] + ([(old.stack, old.runs)] if old else [])
        for target, runs in order[::-1] if index % 2 else order:
            took = timed(target, member, text, report)
            if took is not None:
                runs.add(text, floor_s, *took, normalize=normalize_s)
    return out


def timed(
    stack: Stack, member: int, text: str, report: Report
) -> tuple[float, float, float] | None:
    """POST ?wait of a new text: the client's wait, and the worker's model and pipeline seconds
    for that job; None (a problem reported) when it did not end done in time."""
    took, response = stack.post({"member_id": member, "text": text}, "?wait=60")
    body = response.json()
    if response.status_code != 200 or body.get("status") != "done" or body.get("cached"):
        report.problems.append(f"new text not synthesized in time: {response.status_code} {body}")
        return None
    return (took, *stack.worker_seconds(body["job_id"]))


@dataclass
class Ratios:
    """Per repetition: a measured time and the in-process reference taken just before it."""

    values: list[float] = field(default_factory=list)
    references: list[float] = field(default_factory=list)

    def add(self, value: float, reference: float) -> None:
        self.values.append(value)
        self.references.append(reference)

    @property
    def ratio(self) -> float:
        """The median of the per-repetition ratios: each pair shares the machine's mood."""
        return statistics.median(v / r for v, r in zip(self.values, self.references, strict=True))


def overhead_split(runs: Paired) -> str:
    """The serving overhead's p50 split: in the worker around the model, and the rest."""
    worker = pct(runs.in_worker, 50)
    return f"{ms(worker)} in the worker, ~{ms(pct(runs.overhead, 50) - worker)} outside it"


def latency_rows(report: Report, label: str, runs: Paired) -> None:
    e2e, base = pct(runs.e2e, 50), pct(runs.floor, 50)
    report.add(f"{label}: POST ?wait -> URL, p50", ms(e2e), ms(base), f"{e2e / base:.2f}x")
    for q, budget in ((50, 0.015), (95, 0.050)):
        extra = pct(runs.overhead, q)
        report.add(
            f"{label}: serving overhead (wait - the worker's model time for that job), p{q}",
            ms(extra),
            "",
            f"+{extra / base * 100:.1f} % of the floor",
            f"<= {budget * 1000:.0f} ms",
            extra <= budget,
        )
    worker, rest = pct(runs.in_worker, 50), pct(runs.overhead, 50) - pct(runs.in_worker, 50)
    report.add(
        f"{label}: where the overhead goes, p50 (profile)",
        f"{ms(worker)} in the worker around the model (cache lookup, WAV encoding, storage), "
        f"~{ms(rest)} HTTP + API + RabbitMQ + result delivery",
    )


JUNK: list[dict[str, Any]] = [
    {"data": "{not json", "headers": {"Content-Type": "application/json"}},
    {"data": "member_id=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    {"json": {"member_id": 1}},
    {"json": {"member_id": 1, "text": ""}},
    {"json": {"member_id": 1, "text": "🙂🙂"}},
    {"json": {"member_id": 99999, "text": "안녕"}},
    {"json": {"member_id": "../../etc", "text": "안녕"}},
    {"json": {"member_id": 1, "text": "가" * 5000}},
    {"data": "x" * 70000, "headers": {"Content-Type": "application/json"}},
]


JUNK_PER_SECOND = 25


def junk_load(stack: Stack, stop: threading.Event, statuses: Counter[int]) -> None:
    """Malformed requests from another client at a steady rate, until ``stop``."""
    i = 0
    while not stop.wait(1 / JUNK_PER_SECOND):
        spec = dict(JUNK[i % len(JUNK)])
        _, response = stack.post(None, **spec)
        statuses[response.status_code] += 1
        i += 1


def wait_all(stack: Stack, job_ids: list[str], report: Report, timeout: float = 300) -> Counter:
    """Follow accepted jobs to their end; anything not done or failed-with-a-reason is lost."""
    outcome: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    for job_id in job_ids:
        while True:
            status = stack.status(job_id)
            if status.get("status") in {"done", "failed"} or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        state = status.get("status", "unknown")
        if state == "failed" and not status.get("error"):
            state = "failed without a reason"
        outcome[state] += 1
        if state not in {"done", "failed"}:
            report.problems.append(f"accepted job {job_id} lost: {status}")
    return outcome


def run(args: argparse.Namespace) -> Report:
    plan = SMOKE if args.smoke else FULL
    report = Report()
    work = Path(tempfile.mkdtemp(prefix="moksori-bench-"))
    voice_dir, kind = choose_voices(args.voices, work)
    member = 1
    _LOGGER.info("loading %s voices in-process for the floor (%d thread)", kind, args.threads)
    floor = Floor(voice_dir, member, args.threads)
    report.notes.append(
        f"Voices: **{kind}** ({voice_dir}), member {member}; torch threads per process: "
        f"{args.threads}; {os.cpu_count()} cores; dynamic batching: "
        f"{f'up to {args.batch_size}' if args.batch_size > 1 else 'off'}; "
        "broker RabbitMQ, results Redis, local storage. "
        "Floor: the same text through the worker's normalize + synthesize stages in this "
        "process, measured just before the service gets it."
    )
    queue = f"moksori-bench-{uuid.uuid4().hex[:6]}"
    stack = Stack(voice_dir, work, args.threads, queue, [member], batch_size=args.batch_size)
    old = None
    code = code_at(args.old_rev, work / "old-code") if args.old_rev else None
    if code is not None:
        (work / "old").mkdir()
        old_voices = self_contained(voice_dir, work / "old-voices")
        old_stack = Stack(
            old_voices, work / "old", args.threads, f"{queue}-old", [member],
            batch_size=args.batch_size, code=code,
        )  # fmt: skip
        old = Baseline(args.old_rev, old_stack)
    try:
        _LOGGER.info("starting a worker and the API")
        started = stack.add_worker()
        stack.start_api()
        stack.wait_served(1)
        if old is not None:
            _LOGGER.info("starting a worker and the API of revision %s", old.rev)
            old.stack.add_worker()
            old.stack.start_api()
            old.stack.wait_served(1)
        Phases(stack, floor, member, plan, report, old=old).all(started)
    finally:
        stack.close()
        if old is not None:
            old.stack.close()
    return report


@dataclass
class Phases:
    """Each phase adds its rows to the report; texts are new to the cache in every phase."""

    stack: Stack
    floor: Floor
    member: int
    plan: Plan
    report: Report
    old: Baseline | None = None
    """The earlier revision whose short-text overhead is measured beside this one's."""
    texts: Texts = field(default_factory=Texts)
    paragraphs: Paragraphs = field(default_factory=Paragraphs)
    pause: float = 0.25

    def all(self, started: WorkerStart) -> None:
        for stack in [self.stack] + ([self.old.stack] if self.old else []):
            stack.post({"member_id": self.member, "text": "준비 운동입니다."}, "?wait=60")
        short = self.new_text()
        self.short_against_old(short)
        self.repeats(short)
        self.accepted()
        self.malformed_mixed_in(short)
        self.seed_workload()
        self.long_text_one_worker()
        self.scaling(short)
        self.long_text_two_workers()
        self.footprint(started)

    def body(self, text: str) -> dict[str, Any]:
        return {"member_id": self.member, "text": text}

    def new_text(self) -> Paired:
        _LOGGER.info("new text, one at a time")
        short = sequential(
            self.stack, self.floor, self.member, self.texts.take(self.plan.short), self.pause,
            self.report, self.old,
        )  # fmt: skip
        latency_rows(self.report, "new text, 1 sentence", short)
        long = sequential(
            self.stack, self.floor, self.member, self.texts.take(self.plan.long, sentences=5),
            self.pause, self.report,
        )  # fmt: skip
        latency_rows(self.report, "new text, 5 sentences", long)
        return short

    def short_against_old(self, short: Paired) -> None:
        """The short-text serving overhead against the earlier revision's, measured on the same
        texts alternately."""
        label = (
            "short text (1 sentence): serving overhead p50 (POST ?wait - the worker's model time)"
        )
        if self.old is None or not self.old.runs.e2e:
            self.report.add_long(5, label, ms(pct(short.overhead, 50)), "earlier revision not run")
            return
        new, old = pct(short.overhead, 50), pct(self.old.runs.overhead, 50)
        self.report.add_long(
            5,
            f"{label}, this revision vs {self.old.rev} (the same {len(short.e2e)} texts, "
            "alternately)",
            ms(new),
            f"{ms(old)} ({self.old.rev})",
            f"{new / old:.2f}x ({(new - old) * 1000:+.1f} ms)",
            f"<= {self.old.rev} + 2 ms",
            new <= old + 0.002,
        )
        self.report.add_long(
            10,
            "short text: where the serving overhead goes, p50 (profile)",
            f"{overhead_split(short)}; the normalize stage alone in-process "
            f"{ms(pct(short.normalize, 50))}",
            f"{overhead_split(self.old.runs)} ({self.old.rev})",
        )

    def streamed(self, sentences: list[str]) -> Streamed | None:
        """A paragraph through the service, followed by its audio stream; None (a problem
        reported) unless it ends done with every sentence."""
        try:
            run = self.stack.stream(self.body(" ".join(sentences)))
        except RuntimeError as exc:
            self.report.problems.append(f"long text: {exc}")
            return None
        view = self.stack.status(run.job_id)
        if view.get("status") != "done" or view.get("sentences_total") != len(sentences):
            self.report.problems.append(f"long text did not end done: {view}")
            return None
        return run

    def long_text_one_worker(self) -> None:
        """One worker process: a new paragraph's first audio against its first sentence
        in-process, and its whole against the paragraph in-process in one go (what one job did
        before texts were made sentence by sentence) and, when it runs, against the earlier
        revision's single job; then the paragraph with one sentence changed against that
        sentence in-process. The earlier revision's processes are stopped after."""
        _LOGGER.info("long text, 1 worker process")
        self.stack.scale_to(1)
        count, characters = shape()
        self.report.long_notes.append(
            f"Text: a fan message of {count} sentences, {characters} characters "
            f"(bench/paragraphs.py), {self.plan.paragraphs} repetition(s), each on a paragraph "
            "naming other cities (new to both caches). Value and reference: medians; ratio: the "
            "median of the per-repetition ratios. References: the worker's normalize + "
            "synthesize stages in this process (the floor above), right before each job (the "
            "whole text in one go, then its first sentence alone)."
        )
        first, whole, edit, today, today_model = Ratios(), Ratios(), Ratios(), Ratios(), Ratios()
        costs: list[dict[str, float]] = []
        made, assembled, outside = [], [], []
        for index in range(self.plan.paragraphs):
            sentences = self.paragraphs.new()
            # The earlier revision's job comes every other time first (its references stay
            # right before this revision's job), so that neither always follows the other.
            single = self.single_job(sentences) if index % 2 else None
            run = self.paragraph(sentences, whole, costs, first)
            if run is None:
                continue
            single = single if index % 2 else self.single_job(sentences)
            model_s, pipeline_s = self.stack.worker_seconds(run.job_id)
            made.append(model_s - whole.references[-1])
            assembled.append(pipeline_s - model_s)
            outside.append(run.total_s - pipeline_s)
            if single is not None:
                today.add(run.total_s, single[0])
                today_model.add(model_s, single[1])
            edited = self.paragraphs.edited(sentences)
            one_s = self.floor.seconds([edited[EDITED]], self.pause)[0]
            run = self.streamed(edited)
            if run is not None:
                edit.add(run.total_s, one_s)
        if self.old is not None:
            self.old.stack.close()
        if not whole.values:
            return
        self.long_row(
            1, "time to first audio byte: POST -> first bytes of GET /api/jobs/<id>/audio, "
            "1 worker process",
            first, "its first sentence in-process", 1.5,
        )  # fmt: skip
        self.long_row(
            2, "total: POST -> job done (the stream's end), 1 worker process",
            whole, WHOLE, 1.05,
        )  # fmt: skip
        if self.old is not None and today.values:
            self.report.add_long(
                6,
                f"1 worker process: total against {self.old.rev}'s single job for the same text "
                "(POST ?wait -> done, every other time first), median (profile)",
                f"{statistics.median(today.values):.2f} s (its worker's model time "
                f"{statistics.median(today_model.values):.2f} s)",
                f"{statistics.median(today.references):.2f} s ({self.old.rev}; its worker's model "
                f"time {statistics.median(today_model.references):.2f} s)",
                f"{today.ratio:.2f}x (model time {today_model.ratio:.2f}x)",
            )
        self.report.add_long(
            7,
            "1 worker process: where the total goes beyond the text in-process, median (profile)",
            f"{statistics.median(made) * 1000:+.0f} ms making the {count} sentences one by "
            f"one in the worker (synthesis, WAV, store, progress), "
            f"{statistics.median(assembled) * 1000:.0f} ms plan + assembly in the worker, "
            f"{statistics.median(outside) * 1000:.0f} ms outside it (HTTP, queue, stream)",
        )
        self.cost_row(8, "1 worker process", costs)
        if edit.values:
            self.long_row(
                4, f"a new text sharing all but one sentence (sentence {EDITED + 1}) with an "
                "earlier one: POST -> job done, 1 worker process",
                edit, "that one sentence in-process", 1.2, "about 1x (<= 1.2x)",
            )  # fmt: skip

    def single_job(self, sentences: list[str]) -> tuple[float, float, float] | None:
        """The paragraph as the earlier revision's service makes it (one job, one synthesis),
        timed as :func:`timed`; None without an earlier revision."""
        if self.old is None:
            return None
        return timed(self.old.stack, self.member, " ".join(sentences), self.report)

    def long_text_two_workers(self) -> None:
        """Two worker processes (as ``MOKSORI_WORKERS=2`` runs them): a new paragraph's whole
        against the paragraph in-process in one go."""
        _LOGGER.info("long text, 2 worker processes")
        self.stack.scale_to(2)
        whole = Ratios()
        costs: list[dict[str, float]] = []
        for _ in range(self.plan.paragraphs):
            self.paragraph(self.paragraphs.new(), whole, costs)
        if whole.values:
            self.long_row(
                3, "total: POST -> job done (the stream's end), 2 worker processes",
                whole, WHOLE, 0.6,
            )  # fmt: skip
            self.cost_row(9, "2 worker processes", costs)

    def paragraph(
        self,
        sentences: list[str],
        whole: Ratios,
        costs: list[dict[str, float]],
        first: Ratios | None = None,
    ) -> Streamed | None:
        """A new paragraph in-process in one go (and its first sentence alone, for ``first``),
        then through the service: adds its total and reference to ``whole``, its first audio
        and reference to ``first``, and to ``costs`` the CPU seconds each part of the machine
        used during the job (``in-process``: the whole text's reference), and how many cores
        other processes kept busy during the job and during the reference."""
        before = self.stack.cpu_seconds()
        wall_s, cpu_s = self.floor.measure(" ".join(sentences), self.pause)
        others_s = self.stack.cpu_seconds()["other processes"] - before["other processes"]
        first_s = self.floor.seconds([sentences[0]], self.pause)[0] if first else 0.0
        before = self.stack.cpu_seconds()
        run = self.streamed(sentences)
        if run is None:
            return None
        after = self.stack.cpu_seconds()
        costs.append({name: after[name] - before[name] for name in after})
        costs[-1].update(
            {
                "in-process": cpu_s,
                "wall": run.total_s,
                "others during the job": costs[-1]["other processes"] / run.total_s,
                "others during the reference": others_s / wall_s,
            }
        )
        whole.add(run.total_s, wall_s)
        if first is not None:
            first.add(run.first_s, first_s)
        return run

    def cost_row(self, place: int, label: str, costs: list[dict[str, float]]) -> None:
        """What a long text costs in CPU (which the machine's other work moves less than the
        wall time), and how much of the machine that other work took while it was made."""

        def median(name: str) -> float:
            return statistics.median(cost[name] for cost in costs)

        ratio = statistics.median(cost["workers"] / cost["in-process"] for cost in costs)
        self.report.add_long(
            place,
            f"{label}: CPU seconds per text, median (profile)",
            f"workers {median('workers'):.2f} s for the job, {ratio:.2f}x the text's "
            f"{median('in-process'):.2f} s in-process; API {median('API'):.2f} s; other "
            f"processes kept {median('others during the job'):.2f} of {os.cpu_count()} cores "
            f"busy during the job, {median('others during the reference'):.2f} during the text "
            "in-process",
        )

    def long_row(
        self,
        place: int,
        measure: str,
        runs: Ratios,
        reference: str,
        target: float,
        wording: str = "",
    ) -> None:
        ratio = runs.ratio
        self.report.add_long(
            place,
            measure,
            f"{statistics.median(runs.values):.2f} s",
            f"{statistics.median(runs.references):.2f} s: {reference}",
            f"{ratio:.2f}x",
            wording or f"<= {target}x",
            ratio <= target,
        )

    def repeats(self, short: Paired) -> None:
        _LOGGER.info("repeats")
        before = self.stack.tasks_run()
        took = []
        for text in short.texts:
            seconds, response = self.stack.post(self.body(text))
            took.append(seconds)
            if response.status_code != 200 or not response.json().get("cached"):
                self.report.problems.append(f"repeat not answered from the cache: {response.text}")
        sent = self.stack.tasks_run() - before
        if sent:
            self.report.problems.append(f"{sent} tasks were sent for repeats")
        p50, base = pct(took, 50), pct(short.floor, 50)
        self.report.add(
            f"repeat of a stored text, p50 ({sent} tasks sent for {len(took)} repeats)",
            ms(p50),
            ms(base),
            f"{p50 / base:.3f}x",
            "<= 10 ms, no task",
            p50 <= 0.010 and sent == 0,
        )

    def accepted(self) -> None:
        _LOGGER.info("202s")
        took, job_ids = [], []
        for text in self.texts.take(self.plan.accepted):
            seconds, response = self.stack.post(self.body(text))
            took.append(seconds)
            if response.status_code != 202:
                self.report.problems.append(f"new text without wait: {response.status_code}")
            job_ids.append(response.json()["job_id"])
        p50 = pct(took, 50)
        self.report.add(
            "202 for new text (no wait), p50", ms(p50), "", "", "<= 10 ms", p50 <= 0.010
        )
        outcome = wait_all(self.stack, job_ids, self.report)
        self.report.add(
            f"accepted jobs followed to the end ({len(job_ids)})",
            ", ".join(f"{n} {state}" for state, n in sorted(outcome.items())),
            target="every 202 ends done or failed",
            met=set(outcome) <= {"done", "failed"},
        )

    def malformed_mixed_in(self, clean: Paired) -> None:
        _LOGGER.info("new text with malformed requests mixed in")
        statuses: Counter[int] = Counter()
        stop = threading.Event()
        hammer = threading.Thread(target=junk_load, args=(self.stack, stop, statuses), daemon=True)
        hammer.start()
        try:
            runs = sequential(
                self.stack, self.floor, self.member, self.texts.take(self.plan.junk), self.pause,
                self.report,
            )  # fmt: skip
        finally:
            stop.set()
            hammer.join()
        bad = {code: n for code, n in statuses.items() if not 400 <= code < 500}
        if bad:
            self.report.problems.append(f"malformed requests got non-4xx answers: {bad}")
        extra, before = pct(runs.overhead, 50), pct(clean.overhead, 50)
        self.report.add(
            f"serving overhead with {JUNK_PER_SECOND} malformed requests/s mixed in "
            f"({sum(statuses.values())} sent, all 4xx: {'yes' if not bad else 'no'}), p50",
            ms(extra),
            "",
            f"clean run: {ms(before)}",
            "4xx only; valid ones not slowed (<= clean + 5 ms)",
            not bad and extra <= before + 0.005,
        )

    def seed_workload(self) -> None:
        plan = self.plan
        _LOGGER.info(
            "%d concurrent requests over %d texts", plan.distinct * plan.copies, plan.distinct
        )
        distinct = self.texts.take(plan.distinct)
        base = sum(self.floor.seconds(distinct, self.pause))
        load = [t for t in distinct for _ in range(plan.copies)]
        random.shuffle(load)
        before = self.stack.tasks_run()
        cpu = self.stack.cpu_seconds()
        started = time.perf_counter()
        with ThreadPoolExecutor(len(load)) as pool:
            answers = list(pool.map(lambda t: self.stack.post(self.body(t), "?wait=60"), load))
        wall = time.perf_counter() - started
        self.cpu_row(f"CPU seconds during the {len(load)} concurrent requests", cpu, wall)
        sent = self.stack.tasks_run() - before
        unfinished = [r for _, r in answers if r.status_code != 200 or r.json()["status"] != "done"]
        if unfinished:
            self.report.problems.append(f"{len(unfinished)} concurrent requests did not end done")
        # One task per distinct text; with dynamic batching, jobs taken into another job's batch
        # run inside that task, so fewer tasks are fine and more never are.
        if sent > plan.distinct or (sent < plan.distinct and self.stack.batch_size <= 1):
            self.report.problems.append(f"{sent} tasks for {plan.distinct} distinct texts")
        self.report.add(
            f"{len(load)} concurrent requests over {plan.distinct} texts, all answered "
            f"({sent} tasks run)",
            f"{wall:.2f} s",
            f"{base:.2f} s (the {plan.distinct} texts back to back)",
            f"{wall / base:.2f}x",
            "<= 1.2x",
            wall <= 1.2 * base,
        )

    def scaling(self, short: Paired) -> None:
        _LOGGER.info("scaling")
        one = throughput(self.stack, self.member, self.texts.take(self.plan.scaling), self.report)
        n = os.cpu_count() or 1
        for _ in range(n - 1):
            self.stack.add_worker()
        self.stack.wait_served(n)
        cpu = self.stack.cpu_seconds()
        started = time.perf_counter()
        many = throughput(self.stack, self.member, self.texts.take(self.plan.scaling), self.report)
        self.cpu_row(f"CPU seconds during the {n}-process run", cpu, time.perf_counter() - started)
        base = len(short.floor) / sum(short.floor)
        self.report.add(
            "throughput, distinct 1-sentence texts, 1 worker process",
            f"{one:.2f} texts/s",
            f"{base:.2f} texts/s",
            f"{one / base:.2f}x",
        )
        self.report.add(
            f"throughput, distinct 1-sentence texts, {n} worker processes",
            f"{many:.2f} texts/s",
            "",
            f"{many / one:.2f}x of 1 process",
            f">= {0.8 * n:.1f}x",
            many >= 0.8 * n * one,
        )

    def cpu_row(self, label: str, before: dict[str, float], wall: float) -> None:
        """Where the machine's cores went during a phase: the profile behind a missed ratio."""
        after = self.stack.cpu_seconds()
        used = {name: after[name] - before.get(name, 0.0) for name in after}
        cores = os.cpu_count() or 1
        self.report.add(
            f"{label} (profile; {cores} cores x {wall:.2f} s wall = {cores * wall:.2f} s)",
            ", ".join(f"{name} {seconds:.2f}" for name, seconds in used.items()),
        )

    def footprint(self, started: WorkerStart) -> None:
        api_rss, torch = self.stack.api_rss_mb()
        per_voice = self.floor.rss_per_voice
        self.report.add(
            "worker start-up to consuming, all voices (voice loading alone)",
            f"{started.seconds:.1f} s ({started.loaded_in:.1f} s)",
        )
        self.report.add(
            "worker resident memory: main process / pool process (all voices)",
            f"{started.main_rss_mb:.0f} MiB / {started.pool_rss_mb:.0f} MiB",
        )
        self.report.add(
            f"resident memory per voice (loaded one by one, {len(per_voice)} voices)",
            f"{sum(per_voice) / len(per_voice):.0f} MiB mean, {max(per_voice):.0f} MiB max",
        )
        self.report.add(
            "API resident memory, gunicorn master + 2 workers (torch mapped?)",
            f"{api_rss:.0f} MiB ({'yes' if torch else 'no'})",
            target="< 150 MB, no torch",
            met=api_rss < 150 and not torch,
        )


def throughput(stack: Stack, member: int, texts: list[str], report: Report) -> float:
    """Distinct texts submitted all at once; texts finished per second."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(texts)) as pool:
        answers = list(
            pool.map(lambda t: stack.post({"member_id": member, "text": t}, "?wait=60"), texts)
        )
    wall = time.perf_counter() - t0
    if any(r.status_code != 200 for _, r in answers):
        report.problems.append("a throughput request did not finish")
    return len(texts) / wall


def choose_voices(kind: str, work: Path) -> tuple[Path, str]:
    """The demo voices when present (unless ``tiny``), else tiny random voices built here."""
    demo = REPO_ROOT / "voice_model"
    if kind in {"auto", "demo"} and scan(demo).voices:
        return demo, "demo"
    if kind == "demo":
        raise SystemExit("no demo voices in voice_model/voices (python -m voice_model.demo)")
    from harness.voice_factory import build_repository

    return build_repository(work / "voices"), "tiny"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a short run (what CI does)")
    parser.add_argument("--voices", choices=["auto", "demo", "tiny"], default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--batch-size", type=int, default=1, help="MOKSORI_BATCH_SIZE")
    parser.add_argument(
        "--old-rev",
        default=OLD_REV,
        help="git revision whose short-text overhead is measured beside this one's ('' for none)",
    )
    parser.add_argument("--output", type=Path, help="also write the tables to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="bench | %(message)s", stream=sys.stderr)
    logging.getLogger("TTS").setLevel(logging.ERROR)
    if args.output:  # `make bench` on a fresh clone: var/ does not exist yet
        args.output.parent.mkdir(parents=True, exist_ok=True)
    report = run(args)
    table = report.markdown()
    sys.stdout.write(table + "\n")
    if args.output:
        args.output.write_text(table + "\n", encoding="utf-8")
    for problem in report.problems:
        _LOGGER.error("problem: %s", problem)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
