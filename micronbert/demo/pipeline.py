"""The demo's stages, each a function over public commands and APIs, run in order by `run_demo`.

    synth     a CASME II-layout dataset from real built-in faces (micronbert.synth)
    index     `micronbert index --strict` on it
    prepare   `micronbert prepare` (whole clips: evaluation uses onset/apex, pretraining all frames)
    pretrain  `micronbert faces` on the built-in face videos, then `micronbert pretrain` (tiny preset) on
              those real face frames plus the aligned synthetic clips
    evaluate  `micronbert evaluate` LOSO: μ-BERT, the no-DMA ablation, the optical-flow CNN, and μ-BERT on a
              copy of the sample table whose labels are permuted (the label-shuffled control); run two at a
              time with one thread each (two cores)
    predict   `micronbert finetune` on all samples, then `micronbert predict` on a real face video
    report    report.html (self-contained), metrics.json (μ-BERT's result, evaluate's format)

A stage whose command is missing or fails is reported as unavailable and the rest still run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from micronbert.demo.results import RUNS, metrics_table, shuffled_runs

FORMAT = "casme2"
PROTOCOL = "megc2019"
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
    epochs: int = 15
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
    def cli(self, *argv: str, quiet: bool = False) -> int:
        """Run a micronbert command in this process (its output goes to the terminal unless quiet)."""
        from contextlib import redirect_stderr, redirect_stdout
        import io

        from micronbert.cli import main

        argv = [str(a) for a in argv]
        if not quiet:
            return main(argv)
        buf = io.StringIO()
        with redirect_stdout(buf), redirect_stderr(buf):
            rc = main(argv)
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        log = self.out / "logs" / f"{argv[0]}.log"
        with log.open("a") as fh:
            fh.write(f"$ micronbert {' '.join(argv)}\n{buf.getvalue()}\n")
        if rc != 0:
            self.log(f"    micronbert {argv[0]} exited with {rc}; last lines of {log}:")
            for line in buf.getvalue().strip().splitlines()[-5:]:
                self.log(f"      {line}")
        return rc

    def watch(self, status: Callable[[], str], every: float = 20.0):
        """While the with-block runs, print status() every `every` seconds (long in-process stages)."""
        import threading
        from contextlib import contextmanager

        @contextmanager
        def ctx():
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
        return ctx()

    def has_command(self, name: str) -> bool:
        import importlib.util

        return importlib.util.find_spec(f"micronbert.commands.{name.replace('-', '_')}") is not None

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
        rc = self.cli("index", "--dataset", FORMAT, "--root", self.data_root, "--out", self.samples, "--strict",
                      quiet=True)
        if rc != 0:
            raise RuntimeError(f"index --strict exited with {rc} (see {self.samples.with_suffix('')}.report.csv)")
        import pandas as pd

        n = len(pd.read_csv(self.samples))
        return {"detail": f"{n} samples, strict check passed"}

    def do_prepare(self) -> dict:
        rc = self.cli("prepare", "--samples", self.samples, "--out", self.cache, "--size", self.cfg.size, quiet=True)
        if rc != 0:
            raise RuntimeError(f"prepare exited with {rc}")
        from micronbert.faces.cache import FaceCache

        n = len(FaceCache(self.cache).keys())
        return {"detail": f"{n} aligned clips of {self.cfg.size} px in {self.cache}"}

    def do_pretrain(self) -> dict:
        from micronbert.data.builtin import face_videos
        from micronbert.faces.cache import FaceCache

        frames = self.out / "pretrain_frames"
        shutil.rmtree(frames, ignore_errors=True)
        real = []
        for video in face_videos():
            if video.name not in self.cfg.real_videos:
                continue
            dst = frames / "real" / video.stem
            if self.cli("faces", video, "--out", dst, "--size", self.cfg.size, quiet=True) == 0:
                real.append(dst)
        import cv2

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

        with self.watch(status):
            rc = self.cli("pretrain", "--frames", *(real + [frames / "synthetic"]), "--out", self.pretrained,
                          "--preset", "tiny", "--steps", c.pretrain_steps, "--batch-size", c.pretrain_batch,
                          "--warmup-steps", max(1, c.pretrain_steps // 10),
                          "--log-every", max(1, c.pretrain_steps // 30), "--ckpt-every", c.pretrain_steps,
                          "--fps", 30, "--seed", c.seed, quiet=True)
        if rc != 0 or not (self.pretrained / "model.safetensors").is_file():
            raise RuntimeError(f"pretrain exited with {rc}")
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

    def eval_argv(self, run: str) -> list[str]:
        c = self.cfg
        shuffled = run.startswith("shuffled")
        samples = self._shuffled_samples(run) if shuffled else self.samples
        model = "micronbert" if shuffled else run
        argv = ["evaluate", "--samples", str(samples), "--protocol", PROTOCOL, "--cache", str(self.cache),
                "--model", model, "--out", str(self.results / run), "--seed", str(c.seed), "--threads", "1",
                "--overwrite"]
        if run == "flow-cnn":
            argv += ["--epochs", str(max(c.epochs * 2, 2))]
        else:
            argv += ["--init", str(self.pretrained), "--epochs", str(c.epochs)]
            if c.freeze_encoder:
                argv += ["--freeze-encoder"]
        return argv

    def do_evaluate(self) -> dict:
        if not self.has_command("evaluate"):
            raise RuntimeError("`micronbert evaluate` is not available in this installation")
        shutil.rmtree(self.results, ignore_errors=True)
        self.results.mkdir(parents=True)
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MICRONBERT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
        queue = [r for r in RUNS if r != "shuffled"] + shuffled_runs(self.cfg.shuffles)
        running: dict[str, tuple[subprocess.Popen, float, object]] = {}
        done: dict[str, dict] = {}
        last_note = time.perf_counter()
        while queue or running:
            while queue and len(running) < max(1, self.cfg.parallel):
                run = queue.pop(0)
                log = open(self.out / "logs" / f"evaluate-{run}.log", "w")
                proc = subprocess.Popen([sys.executable, "-m", "micronbert", *self.eval_argv(run)], stdout=log,
                                        stderr=subprocess.STDOUT, env=env)
                running[run] = (proc, time.perf_counter(), log)
            time.sleep(0.5)
            for run, (proc, t0, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[run]
                m = self.results / run / "metrics.json"
                if proc.returncode == 0 and m.is_file():
                    met = json.loads(m.read_text())
                    done[run] = {"ok": True, "seconds": time.perf_counter() - t0, "uf1": met["uf1"], "uar": met["uar"]}
                    self.log(f"    {run}: UF1 {met['uf1']:.3f} UAR {met['uar']:.3f} "
                             f"({time.perf_counter() - t0:.0f} s)")
                else:
                    done[run] = {"ok": False, "seconds": time.perf_counter() - t0}
                    self.log(f"    {run}: failed (exit {proc.returncode}, see logs/evaluate-{run}.log)")
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

        if not (self.has_command("finetune") and self.has_command("predict")):
            raise RuntimeError("`micronbert finetune`/`predict` are not available in this installation")
        c = self.cfg
        shutil.rmtree(self.classifier, ignore_errors=True)
        argv = ["finetune", "--samples", self.samples, "--protocol", PROTOCOL, "--cache", self.cache,
                "--model", "micronbert", "--init", self.pretrained, "--epochs", c.epochs, "--seed", c.seed,
                "--out", self.classifier]
        if c.freeze_encoder:
            argv.append("--freeze-encoder")
        if self.cli(*argv, quiet=True) != 0:
            raise RuntimeError("finetune failed")
        video = next((v for v in face_videos() if v.name == "single_face.mp4"), None)
        if video is None:
            raise RuntimeError("the built-in face video single_face.mp4 is missing")
        shutil.rmtree(self.prediction, ignore_errors=True)
        argv = ["predict", video, "--weights", self.classifier, "--out", self.prediction]
        if c.predict_max_frames:
            argv += ["--max-frames", c.predict_max_frames]
        if self.cli(*argv, quiet=True) != 0:
            raise RuntimeError("predict failed")
        import pandas as pd

        table = pd.read_csv(self.prediction / "predictions.csv")
        first = (f"{len(table)} interval(s); first: frames {table.iloc[0]['onset']}-{table.iloc[0]['offset']} -> "
                 f"{table.iloc[0]['label']} ({table.iloc[0]['confidence']:.2f})") if len(table) else "no interval"
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
