"""The demo's stages, run in order by `run_demo`; each calls the library (micronbert.demo.steps: what the
matching `micronbert` command does, with the demo's settings).

    synth     a CASME II-layout dataset from real built-in faces (micronbert.synth)
    index     the sample table, strict: any report entry fails the stage (as `micronbert index --strict`)
    prepare   aligned face cache (whole clips: evaluation uses onset/apex, pretraining all frames)
    pretrain  aligned faces of the built-in face videos, then μ-BERT pretraining (tiny preset) on those
              real face frames plus the aligned synthetic clips
    evaluate  LOSO: μ-BERT, the no-DMA ablation, the optical-flow CNN, and μ-BERT on a copy of the sample
              table whose labels are permuted (the label-shuffled control); a process pool of evaluation
              functions, two at a time with one thread each (two cores)
    predict   μ-BERT fine-tuned on all samples, then prediction on a real face video
    report    report.html (self-contained), metrics.json (μ-BERT's result, evaluate's format)

Each stage's own output goes to logs/<stage>.log (logs/evaluate-<run>.log per evaluation). A stage that
fails is reported as unavailable and the rest still run.
"""
from __future__ import annotations

import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from micronbert.demo import steps
from micronbert.demo.results import RUNS, metrics_table, shuffled_runs

FORMAT = "casme2"
# Six clips per subject: two positive, two negative (one disgust, one repression), two surprise.
CLASSES = ("happiness", "disgust", "surprise", "happiness", "repression", "surprise")


@dataclass
class DemoConfig:
    subjects: int = 8
    clips_per_subject: int = 6
    frames: int = 12
    amplitude_px: float = 3.0
    size: int = 112              # the tiny preset's input
    pretrain_steps: int = 150
    pretrain_batch: int = 16
    epochs: int = 30              # fine-tuning epochs per fold, every model (the frozen CPU recipe's own)
    freeze_encoder: bool = True
    predict_max_frames: int | None = None
    real_videos: tuple[str, ...] = ("single_face.mp4", "WolfgangLanger_Pexels.mp4")
    seed: int = 0
    parallel: int = 2
    shuffles: int = 3            # permutations in the label-shuffled control (one is a noisy control)

    @classmethod
    def quick(cls) -> "DemoConfig":
        """Seconds instead of minutes: for tests of the orchestration, not for numbers."""
        return cls(subjects=3, clips_per_subject=3, frames=6, pretrain_steps=3, pretrain_batch=4, epochs=2,
                   predict_max_frames=24, real_videos=("single_face.mp4",), shuffles=1)


@dataclass
class StageResult:
    name: str
    ok: bool
    seconds: float
    detail: str = ""
    data: dict = field(default_factory=dict)


class Demo:
    def __init__(self, out, cfg: DemoConfig, log: Callable[[str], None] = print):
        self.out = Path(out)
        self.cfg = cfg
        self.log = log
        self.stages: list[StageResult] = []
        self.data_root = self.out / "data" / FORMAT
        self.samples = self.out / "samples.csv"
        self.cache = self.out / "cache"
        self.pretrained = self.out / "pretrain"
        self.results = self.out / "results"
        self.classifier = self.out / "classifier"
        self.prediction = self.out / "predict"

    # -- helpers -------------------------------------------------------------------------------------
    @contextmanager
    def logged(self, name: str):
        """While the with-block runs, its stdout/stderr go to logs/<name>.log; on an error the last lines are
        shown."""
        import io
        from contextlib import redirect_stderr, redirect_stdout

        buf = io.StringIO()
        log = self.out / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            with redirect_stdout(buf), redirect_stderr(buf):
                yield
        except Exception:
            self.log(f"    {name} failed; last lines of {log}:")
            for line in buf.getvalue().strip().splitlines()[-5:]:
                self.log(f"      {line}")
            raise
        finally:
            with log.open("a") as fh:
                fh.write(buf.getvalue())

    @contextmanager
    def watch(self, status: Callable[[], str], every: float = 20.0):
        """While the with-block runs, print status() every `every` seconds (long in-process stages)."""
        import threading

        stop = threading.Event()

        def loop():
            while not stop.wait(every):
                try:
                    self.log(f"    ... {status()}")
                except Exception:
                    pass
        t = threading.Thread(target=loop, daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()

    def stage(self, name: str, fn: Callable[[], dict | None], needs: tuple[str, ...] = ()) -> StageResult:
        n = len(self.stages) + 1
        missing = [s for s in needs if not any(r.name == s and r.ok for r in self.stages)]
        if missing:
            res = StageResult(name, False, 0.0, f"skipped: needs {', '.join(missing)}")
            self.log(f"[{n}] {name}: {res.detail}")
            self.stages.append(res)
            return res
        self.log(f"[{n}] {name} ...")
        t0 = time.perf_counter()
        try:
            data = fn() or {}
            res = StageResult(name, True, time.perf_counter() - t0, data.pop("detail", ""), data)
        except Exception as exc:  # a broken stage must not stop the demo: say so and go on
            res = StageResult(name, False, time.perf_counter() - t0, f"unavailable: {type(exc).__name__}: {exc}")
        self.log(f"[{n}] {name}: {'done' if res.ok else 'FAILED'} in {res.seconds:.1f} s"
                 + (f" - {res.detail}" if res.detail else ""))
        self.stages.append(res)
        return res

    # -- stages --------------------------------------------------------------------------------------
    def do_synth(self) -> dict:
        from micronbert.synth import synthesize

        shutil.rmtree(self.data_root, ignore_errors=True)
        c = self.cfg
        classes = list(CLASSES) if c.clips_per_subject >= 3 else ["happiness", "disgust", "surprise"]
        s = synthesize(FORMAT, self.data_root, c.subjects, c.clips_per_subject, c.amplitude_px, c.seed, classes,
                       c.frames, progress_cb=lambda m: self.log(f"    {m}"))
        return {"detail": f"{s['samples']} clips, {s['subjects']} subjects ({len(s['distinct_people'])} distinct "
                          f"people), amplitude {c.amplitude_px} px at 224 px", "summary": s}

    def do_index(self) -> dict:
        with self.logged("index"):
            n = steps.index_strict(FORMAT, self.data_root, self.samples)
        return {"detail": f"{n} samples, strict check passed"}

    def do_prepare(self) -> dict:
        from micronbert.faces.cache import FaceCache

        with self.logged("prepare"):
            steps.prepare_cache(self.samples, self.cache, self.cfg.size)
        n = len(FaceCache(self.cache).keys())
        return {"detail": f"{n} aligned clips of {self.cfg.size} px in {self.cache}"}

    def do_pretrain(self) -> dict:
        import cv2

        from micronbert.data.builtin import face_videos
        from micronbert.faces.cache import FaceCache

        frames = self.out / "pretrain_frames"
        shutil.rmtree(frames, ignore_errors=True)
        real = []
        for video in face_videos():
            if video.name not in self.cfg.real_videos:
                continue
            dst = frames / "real" / video.stem
            with self.logged("faces"):
                if steps.align_video(video, dst, self.cfg.size):
                    real.append(dst)
        cache = FaceCache(self.cache)
        n_syn = 0
        for ds, sid in cache.keys():
            s = cache.load(ds, sid)
            d = frames / "synthetic" / sid.replace("/", "_")
            d.mkdir(parents=True, exist_ok=True)
            for num, img in zip(s.frame_numbers, s.frames):
                cv2.imwrite(str(d / f"{int(num)}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            n_syn += 1
        shutil.rmtree(self.pretrained, ignore_errors=True)
        c = self.cfg

        def status() -> str:
            import csv

            rows = list(csv.DictReader((self.pretrained / "log.csv").open()))
            last = rows[-1]
            return f"pretrain step {last['step']}/{c.pretrain_steps}, loss {float(last['loss']):.3f}"

        with self.watch(status), self.logged("pretrain"):
            steps.pretrain_tiny(real + [frames / "synthetic"], self.pretrained, c.pretrain_steps, c.pretrain_batch,
                                c.seed)
        if not (self.pretrained / "model.safetensors").is_file():
            raise RuntimeError(f"pretraining wrote no {self.pretrained / 'model.safetensors'}")
        return {"detail": f"{c.pretrain_steps} steps × {c.pretrain_batch} pairs on {len(real)} real face videos "
                          f"+ {n_syn} synthetic clips"}

    def _shuffled_samples(self, run: str = "shuffled") -> Path:
        """A copy of the sample table with the emotions permuted across samples (class counts kept);
        each shuffled run has its own permutation."""
        import numpy as np

        from micronbert.data.samples import read_samples, write_samples

        df = read_samples(self.samples)
        k = shuffled_runs(self.cfg.shuffles).index(run) if run in shuffled_runs(self.cfg.shuffles) else 0
        rng = np.random.default_rng([self.cfg.seed, 12345, k])
        df["emotion"] = df["emotion"].to_numpy()[rng.permutation(len(df))]
        path = self.out / f"samples_{run}.csv"
        write_samples(df, path)
        return path

    def eval_job(self, run: str) -> steps.EvalJob:
        """One evaluation: the flow CNN trains from scratch; the others start from the pretrained μ-BERT
        (the shuffled control is μ-BERT on permuted labels). Every run trains the same epochs."""
        c = self.cfg
        shuffled, flow = run.startswith("shuffled"), run == "flow-cnn"
        return steps.EvalJob(run, "micronbert" if shuffled else run,
                             self._shuffled_samples(run) if shuffled else self.samples, self.cache, self.results / run,
                             None if flow else self.pretrained, c.epochs,
                             c.freeze_encoder and not flow, c.seed, self.out / "logs" / f"evaluate-{run}.log")

    def do_evaluate(self) -> dict:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        shutil.rmtree(self.results, ignore_errors=True)
        self.results.mkdir(parents=True)
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        jobs = [self.eval_job(r) for r in [r for r in RUNS if r != "shuffled"] + shuffled_runs(self.cfg.shuffles)]
        for job in jobs:
            job.log.unlink(missing_ok=True)  # a run has started once its log exists
        done: dict[str, dict] = {}
        last_note = time.perf_counter()
        # spawn: fresh processes, whose torch reads the one-thread setting before it starts its thread pools
        with ProcessPoolExecutor(max(1, self.cfg.parallel), multiprocessing.get_context("spawn"),
                                 initializer=steps.one_thread) as pool:
            pending = {pool.submit(steps.evaluate_run, job): job for job in jobs}
            while pending:
                finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in finished:
                    run = pending.pop(fut).run
                    try:
                        done[run] = fut.result()
                        self.log(f"    {run}: UF1 {done[run]['uf1']:.3f} UAR {done[run]['uar']:.3f} "
                                 f"({done[run]['seconds']:.0f} s)")
                    except Exception as exc:  # one failed run must not stop the others
                        done[run] = {"ok": False}
                        self.log(f"    {run}: failed ({type(exc).__name__}: {exc}; see logs/evaluate-{run}.log)")
                running = [job.run for job in pending.values() if job.log.exists()]
                if running and time.perf_counter() - last_note > 20:
                    last_note = time.perf_counter()
                    state = ", ".join(f"{r} {len(list((self.results / r / 'folds').glob('*.json')))} folds"
                                      for r in running)
                    self.log(f"    ... {state} done")
        if not done.get("micronbert", {}).get("ok"):
            raise RuntimeError("the μ-BERT evaluation failed (see logs/evaluate-micronbert.log)")
        shutil.copyfile(self.results / "micronbert" / "metrics.json", self.out / "metrics.json")
        failed = [r for r, d in done.items() if not d["ok"]]
        return {"detail": f"{len(done) - len(failed)}/{len(done)} runs" + (f"; failed: {failed}" if failed else ""),
                "runs": done}

    def do_predict(self) -> dict:
        from micronbert.data.builtin import face_videos

        c = self.cfg
        shutil.rmtree(self.classifier, ignore_errors=True)
        with self.logged("finetune"):
            steps.finetune_all(self.samples, self.cache, self.pretrained, self.classifier, c.epochs,
                               c.freeze_encoder, c.seed)
        video = next((v for v in face_videos() if v.name == "single_face.mp4"), None)
        if video is None:
            raise RuntimeError("the built-in face video single_face.mp4 is missing")
        shutil.rmtree(self.prediction, ignore_errors=True)
        with self.logged("predict"):
            table = steps.predict_video(self.classifier, video, self.prediction, c.predict_max_frames)
        first = (f"{len(table)} interval(s); first: frames {table.iloc[0]['onset']}-{table.iloc[0]['offset']} -> "
                 f"{table.iloc[0]['label']} ({table.iloc[0]['confidence']:.2f})")
        return {"detail": f"{video.name}: {first}", "video": str(video)}

    def do_report(self) -> dict:
        from micronbert.demo.report import write_report

        path = write_report(self)
        return {"detail": str(path), "path": str(path)}

    # -- all -----------------------------------------------------------------------------------------
    def run(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        self.stage("synth", self.do_synth)
        self.stage("index", self.do_index, ("synth",))
        self.stage("prepare", self.do_prepare, ("index",))
        self.stage("pretrain", self.do_pretrain, ("prepare",))
        self.stage("evaluate", self.do_evaluate, ("pretrain",))
        self.stage("predict", self.do_predict, ("pretrain",))
        self.total_s = time.perf_counter() - t0
        rep = self.stage("report", self.do_report)
        self.write_summary()
        self.log("")
        for line in metrics_table(self.results).splitlines():
            self.log(line)
        self.log("")
        self.log(f"demo finished in {time.perf_counter() - t0:.0f} s; stages: "
                 + ", ".join(f"{s.name} {'ok' if s.ok else 'FAILED'} {s.seconds:.0f}s" for s in self.stages))
        if rep.ok:
            self.log(f"report: {rep.data['path']}")
        core = all(s.ok for s in self.stages if s.name in ("synth", "index", "prepare", "pretrain", "evaluate",
                                                            "report"))
        return 0 if core else 1

    def write_summary(self) -> None:
        from micronbert.utils.io import atomic_write_json

        atomic_write_json(self.out / "demo.json", {
            "config": asdict(self.cfg),
            "stages": [{"name": s.name, "ok": s.ok, "seconds": round(s.seconds, 2), "detail": s.detail}
                       for s in self.stages]})


def terminal_log() -> Callable[[str], None]:
    """print to the stdout of now: the stages redirect sys.stdout into their logs while commands run,
    and the progress thread must still reach the terminal."""
    stream = sys.stdout
    return lambda message: print(message, file=stream, flush=True)


def run_demo(out, cfg: DemoConfig | None = None, log: Callable[[str], None] | None = None) -> int:
    return Demo(out, cfg or DemoConfig(), log or terminal_log()).run()
