#!/usr/bin/python3
"""Runs the timed part of bench/peer/run.sh and prints the markdown table of bench/RESULTS.md
("PyTorch peer"). Arguments are the work folder run.sh prepared:

    report.py WORK    (WORK holds shears, super-stories.onnx, super-25m.onnx, ids.jsonl, ids16.jsonl, tok512.bin)

Everything that is compared is measured here, in one run, interleaved (shears, then each peer
configuration, repeated REPS times), so the ratio is taken at the same moment of a shared machine:
  - the fp32 GEMM peak: torch.matmul 2048² on 2 threads (and 1), best of 5;
  - the initial loss of both sides on the same 16 records (shears: the first step's loss of a
    one-step run, where B = 0 so the ranks and dropout do not matter; the peer: the same mean);
  - tokens/s: steady (optimizer steps after the first, which builds the step graph) and the
    whole process, peak RSS of each process (wait4's ru_maxrss).
"""
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "peer.py")
PY = "/usr/bin/python3"


def run_rss(cmd, env=None):
    """Runs cmd with its output in files; returns (stdout, wall seconds, peak RSS MiB)."""
    t = time.perf_counter()
    with open(os.devnull, "wb") as devnull, open("/tmp/.peer-report.out", "w+b") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=devnull, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        out.seek(0)
        text = out.read().decode()
    if p.returncode != 0:
        raise SystemExit("report: %s failed (exit %d); rerun it by hand to see why" % (" ".join(cmd), p.returncode))
    return text, wall, ru.ru_maxrss / 1024.0


# The shears configurations: the first is the one the ratios are taken against.
SHEARS = [("shears train (onnxruntime, default threads = 2)", []), ("shears train --threads 1", ["--threads", "1"])]


def env_with(**kw):
    e = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    e.update({k: str(v) for k, v in kw.items()})
    return e


def shears_steady(run_dir):
    recs = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl")) if l.strip()]
    steady = recs[1:] or recs
    tokens = sum(r["tokens"] for r in steady)
    secs = sum(r["tokens"] / r["tokens_per_s"] for r in steady)
    return tokens / secs, recs


def main():
    work = sys.argv[1]
    reps = int(os.environ.get("REPS", "2"))
    tok = os.path.join(work, "tok512.bin")
    shears = os.path.join(work, "shears")
    peers = [  # label, environment, torch threads
        ("PyTorch, 2 threads", env_with(OPENBLAS_NUM_THREADS=2), 2),
        ("PyTorch, 2 threads, OMP_WAIT_POLICY=PASSIVE", env_with(OPENBLAS_NUM_THREADS=2, OMP_WAIT_POLICY="PASSIVE"), 2),
        ("PyTorch, 1 thread", env_with(OPENBLAS_NUM_THREADS=1), 1),
    ]
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "nproc": os.cpu_count(), "loadavg_start": os.getloadavg()[0]}
    sg = {}
    for th in (2, 1):
        o, _, _ = run_rss([PY, PEER, "sgemm", "--threads", str(th)], env_with(OPENBLAS_NUM_THREADS=th))
        sg[th] = json.loads(o)["gflops"]
    out["sgemm_gflops"] = sg
    print("sgemm peak: %.1f GFLOP/s on 2 threads, %.1f on 1" % (sg[2], sg[1]), file=sys.stderr)
    models = [("stories260K, 50% Wanda, ranks 8,6,4 α16", "super-stories.onnx"),
              ("25m synthetic, ranks 32,24,16 α64", "super-25m.onnx")]
    out["models"] = []
    for label, name in models:
        model = os.path.join(work, name)
        m = {"label": label, "rows": {}}
        # Initial loss on the same 16 records.
        chk = os.path.join(work, "chk-" + name)
        subprocess.run(["rm", "-rf", chk], check=True)
        o, _, _ = run_rss([shears, "train", model, "--data", os.path.join(work, "ids16.jsonl"), "--tokenizer", tok,
                           "--out", chk, "--epochs", "1", "--no-progress", "--json"], env_with())
        s_loss = json.loads(o)["first_loss"]
        o, _, _ = run_rss([PY, PEER, "loss", model, os.path.join(work, "ids16.jsonl"), "--n", "16"], env_with())
        p_loss = json.loads(o)["loss"]
        m["loss"] = {"shears": s_loss, "peer": p_loss, "diff": abs(s_loss - p_loss)}
        print("%s: initial loss shears %.6f peer %.6f" % (label, s_loss, p_loss), file=sys.stderr)
        for rep in range(reps):
            rd = os.path.join(work, "run-" + name)
            for slabel, extra in SHEARS:
                subprocess.run(["rm", "-rf", rd], check=True)
                o, wall, rss = run_rss([shears, "train", model, "--data", os.path.join(work, "ids.jsonl"), "--tokenizer", tok,
                                        "--out", rd, "--epochs", "1", "--no-progress", "--json"] + extra, env_with())
                res = json.loads(o)
                steady, recs = shears_steady(rd)
                m["rows"].setdefault(slabel, []).append({"steady": steady, "total": res["tokens"] / wall, "rss": rss, "steps": len(recs)})
                print("  rep %d %s %.0f tok/s steady, %.0f total, %.0f MiB" % (rep, slabel, steady, res["tokens"] / wall, rss), file=sys.stderr)
            for plabel, penv, th in peers:
                o, wall, rss = run_rss([PY, PEER, "train", model, os.path.join(work, "ids.jsonl"), "--threads", str(th)], penv)
                r = json.loads(o)
                m["flops_per_token"] = r["flops_per_token"]
                m["rows"].setdefault(plabel, []).append({"steady": r["tokens_per_s_steady"],
                                                         "total": r["tokens_per_step"] * r["steps"] / wall, "rss": rss, "steps": r["steps"]})
                print("  rep %d %s %.0f tok/s steady, %.0f MiB" % (rep, plabel, r["tokens_per_s_steady"], rss), file=sys.stderr)
        out["models"].append(m)
    out["loadavg_end"] = os.getloadavg()[0]
    with open(os.path.join(work, "report.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(markdown(out))


def markdown(out):
    peak = out["sgemm_gflops"][2]
    lines = ["Measured fp32 GEMM peak (torch.matmul 2048², best of 5): %.1f GFLOP/s on 2 threads, %.1f on 1. "
             "Load average %.1f at the start, %.1f at the end." % (peak, out["sgemm_gflops"][1], out["loadavg_start"], out["loadavg_end"]), ""]
    lines.append("| model | trainer | tokens/s steady (median; all reps) | tokens/s whole process | shears ÷ this | GFLOP/s (% of peak) | peak RSS MiB |")
    lines.append("|---|---|---|---|---|---|---|")
    for m in out["models"]:
        fpt = m["flops_per_token"]["train"]
        rows = m["rows"]
        sh = statistics.median(r["steady"] for r in rows[SHEARS[0][0]])
        for label, rs in rows.items():
            med = statistics.median(r["steady"] for r in rs)
            tot = statistics.median(r["total"] for r in rs)
            g = med * fpt / 1e9
            ratio = "—" if label == SHEARS[0][0] else "%.2f×" % (sh / med)
            lines.append("| %s | %s | %.0f (%s) | %.0f | %s | %.2f (%.1f%%) | %.0f |" % (
                m["label"], label, med, ", ".join("%.0f" % r["steady"] for r in rs), tot, ratio, g, 100 * g / peak,
                max(r["rss"] for r in rs)))
    lines.append("")
    for m in out["models"]:
        f = m["flops_per_token"]
        lines.append("- %s: initial loss on the same 16 records: shears %.6f, PyTorch %.6f (|diff| %.1e); %.2f MFLOP per "
                     "trained token (linear params %d, LoRA params at r_max %d)." % (
                         m["label"], m["loss"]["shears"], m["loss"]["peer"], m["loss"]["diff"], f["train"] / 1e6,
                         f["linear_params"], f["lora_params"]))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
