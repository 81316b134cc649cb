"""Command-line entry point: ``rlepose <command> ...``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table; ``columns`` are (key, header, format)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append(["—" if r.get(k) is None else format(r[k], f) for k, _, f in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_toy(args: argparse.Namespace) -> int:
    """Train each loss on the synthetic heteroscedastic problem for every seed and compare
    held-out results, mean ± std over the seeds."""
    from rlepose.toy import ToyProblem, compare_losses, loss_from_spec, summarize_seeds

    try:
        from tqdm import tqdm
    except ImportError:  # progress bar is a nicety of the [train] extra
        def tqdm(it, **_):
            return it

    problem = ToyProblem(noise=args.noise)
    names = args.losses.split(",")
    for name in names:  # fail before any training on a misspelt loss
        loss_from_spec(name, problem.dim)
    runs = []
    jobs = [(name, seed) for seed in args.seeds for name in names]
    for name, seed in tqdm(jobs, desc="training one regressor per loss and seed", unit="run"):
        runs += [{**row, "seed": seed} for row in compare_losses((name,), problem, steps=args.steps, seed=seed,
                                                                   flow_warmup_steps=args.flow_warmup_steps)]
    rows = summarize_seeds(runs)
    print(f"\nSynthetic regression ({args.noise} noise, {args.steps} Adam steps with the learning rate ×0.1 at "
          f"{int(0.8 * args.steps)}, seeds {args.seeds}, mean ± std); "
          f"held-out NLL in nats per joint (true density: {rows[0]['true_nll']:.3f}), location error vs. the "
          "true location, mean σ̂ and mean |µ̂ − label|:")
    shown = [{k: (v["text"] if isinstance(v, dict) else v) for k, v in r.items()} for r in rows]
    print(_table(shown, [("loss", "loss", "s"), ("nll", "NLL", "s"), ("loc_error", "loc. error", "s"),
                        ("sigma_mean", "mean σ̂", "s"), ("abs_error_mean", "mean |err|", "s")]))
    from rlepose.files import write_json

    out = write_json(args.out, {"problem": vars(problem), "steps": args.steps, "seeds": args.seeds,
                                "flow_warmup_steps": args.flow_warmup_steps,
                                "rows": rows, "runs": runs}, indent=2)
    print(f"\nresults written to {out}")
    return 0


def _summary(metrics: dict) -> str:
    keys = [k for k in metrics if "/" not in k and isinstance(metrics[k], (int, float))]
    return " | ".join(f"{k} {metrics[k]:.4f}" for k in keys)


def _action_table(table: dict) -> str:
    rows = [{"action": a, **v} for a, v in table.items()]
    return _table(rows, [("action", "action", "s"), ("MPJPE", "MPJPE (mm)", ".1f"),
                         ("PA-MPJPE", "PA-MPJPE (mm)", ".1f"), ("n", "poses", "d")])


def cmd_train(args: argparse.Namespace) -> int:
    from rlepose.config import load_config
    from rlepose.training.run import checkpoint_paths, train

    cfg = load_config(args.config, args.overrides)
    module, trainer = train(cfg, resume=args.resume)
    paths = checkpoint_paths(trainer)
    print(f"\ncheckpoints: last {paths.get('last') or '—'}, best {paths.get('best') or '—'}")
    if getattr(module, "last_table", None):
        print(_action_table(module.last_table))
    if module.last_metrics:
        print(f"final validation ({cfg.name}): {_summary(module.last_metrics)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rlepose.config import load_config
    from rlepose.training.run import evaluate

    cfg = load_config(args.config, args.overrides)
    metrics = evaluate(cfg, args.checkpoint, out_file=args.results, trust=args.trust_checkpoint)
    if "table" in metrics:
        print(_action_table(metrics.pop("table")))
    if args.results:
        print(f"predictions written to {args.results}")
    print(f"{cfg.name}: {_summary(metrics)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rlepose.demo import SHIPPED_MODEL, SHIPPED_ONE_STAGE_MODEL, run_demo, run_one_stage_demo, run_shipped_demo

    if args.one_stage and args.rcnn:
        raise ValueError("--one-stage or --rcnn, not both")
    if args.one_stage or args.rcnn:
        if args.compare:
            raise ValueError("--compare trains top-down models; `benchmarks/one_stage.py` and `benchmarks/rcnn.py` "
                             "compare the whole-image models")
        # no trained rcnn model ships: it is trained from scratch unless --model, small enough for minutes
        epochs = args.epochs if args.epochs is not None else 6 if args.rcnn else 12
        train_images = args.train_images if args.train_images is not None else 600 if args.rcnn else 3000
        given = None if args.train or args.rcnn else SHIPPED_ONE_STAGE_MODEL
        summary = run_one_stage_demo(args.out, args.val_images, args.model or given, train_images, epochs, args.seed,
                                     task="rcnn" if args.rcnn else "one_stage")
        kind = "end-to-end top-down" if args.rcnn else "one-stage"
        what = (f"The model {args.model}" if args.model else
                f"{'An' if args.rcnn else 'A'} {kind} RLE model trained from scratch ({epochs} epochs on {train_images} "
                "images)" if given is None else
                f"The shipped one-stage RLE model ({SHIPPED_ONE_STAGE_MODEL.name}: ResNet-18 at half width, P3–P5 "
                "pyramid, 12 epochs on the embedded synthetic dataset; rendered figures only, not for photos)")
        found = "found by its own detector" if args.rcnn else "from the whole image (no detector)"
        print(f"\n{what}: every person of the {args.val_images} held-out images {found}, {summary['seconds']:.0f} s:")
        print("  " + _summary(summary["metrics"]))
        for key in ("checkpoint", "picture", "metrics_file", "data"):
            print(f"  {key:>12}: {summary[key]}")
        return 0
    if args.train_images is None:
        args.train_images = 3000
    if args.epochs is None:
        args.epochs = 4
    if not (args.train or args.compare):
        summary = run_shipped_demo(args.out, args.val_images, args.model or SHIPPED_MODEL)
        what = (f"The model {args.model}" if args.model else
                f"The shipped RLE model ({SHIPPED_MODEL.name}: ResNet-18 at half width, integral head, "
                "60 epochs on the embedded synthetic dataset; rendered figures only, not for photos)")
        print(f"\n{what} on the {args.val_images} held-out images, {summary['seconds']:.0f} s:")
        print("  " + _summary(summary["metrics"]))
        print("  `rlepose demo --train` trains a model from scratch instead (a few minutes); `--one-stage` shows the "
              "one-stage model")
        for key in ("checkpoint", "picture", "metrics_file", "data", "config"):
            print(f"  {key:>12}: {summary[key]}")
        return 0
    summary = run_demo(args.out, args.train_images, args.val_images, args.epochs, args.seed, args.compare)
    print(f"\nRLE on the embedded synthetic dataset (generated figures; {args.train_images} train / "
          f"{args.val_images} held-out images), {summary['seconds'] / 60:.1f} min:")
    print("  " + _summary(summary["metrics"]))
    for c in summary["comparisons"]:
        print(f"the same budget and data with {c['loss']}:")
        print("  " + _summary(c["metrics"]))
        diff = summary["metrics"].get("AP", float("nan")) - c["metrics"].get("AP", float("nan"))
        print(f"  RLE − {c['loss']}: {diff:+.4f} AP (one seed)")
    if not summary["comparisons"]:
        print("  `--compare laplace_nll` trains Laplace NLL the same way for comparison (twice the time)")
    for key in ("checkpoint", "picture", "metrics_file", "data", "logs"):
        print(f"  {key:>12}: {summary[key]}")
    return 0


def _top_down_module(checkpoint: str, args: argparse.Namespace):
    """The trained module of ``checkpoint`` for an analysis of held-out crops (top-down only)."""
    from rlepose.training.run import load_module

    module = load_module(checkpoint, trust=args.trust_checkpoint)
    if module.cfg.task != "topdown":
        raise ValueError(f"{checkpoint} is a {module.cfg.task} model; `rlepose analyze {args.analysis}` studies "
                         "top-down models on held-out crops")
    return module


def cmd_calibration(args: argparse.Namespace) -> int:
    """``rlepose analyze calibration``: reliability, coverage, confidence/OKS; PNG + JSON."""
    from rlepose.analysis.calibration import analyze_calibration
    from rlepose.config import load_config

    module = _top_down_module(args.checkpoint, args)
    s = analyze_calibration(module, load_config(args.config, args.overrides), args.out,
                            title=f"{Path(args.checkpoint).name}: calibration on held-out crops")
    rel, inst = s["reliability"], s["instance_confidence_vs_oks"]
    print(f"{s['crops']} held-out crops; mean |error| predicted {rel['predicted_mean']:.4f}, observed "
          f"{rel['observed_mean']:.4f} (normalized crop units)")
    print("coverage of central intervals: " + ", ".join(
        f"{int(100 * lv)}% → {100 * s['coverage'][str(lv)]['overall']:.1f}%" for lv in s["nominal"]))
    print(f"instance confidence vs OKS: Pearson {inst['pearson']:.3f}, Spearman {inst['spearman']:.3f} "
          f"(n = {inst['n']}, mean OKS {s['mean_oks']:.3f})")
    exp = s["expected_oks_vs_oks"]
    print(f"expected OKS vs OKS: Pearson {exp['pearson']:.3f}, Spearman {exp['spearman']:.3f} "
          f"(mean expected OKS {s['mean_expected_oks']:.3f})")
    print(f"figure: {s['png']}; numbers: {Path(args.out) / 'calibration.json'}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``rlepose calibrate``: one σ̂ scale per joint, fitted on held-out data, stored with the checkpoint."""
    from rlepose.analysis.calibration import calibrate_checkpoint
    from rlepose.config import load_config

    s = calibrate_checkpoint(args.checkpoint, load_config(args.config, args.overrides), args.out,
                             trust=args.trust_checkpoint)
    scales = s["joint_scale"]
    print(f"fitted one scale per joint on {s['fitted_on']} held-out people (range {min(scales):.2f}–"
          f"{max(scales):.2f}, Q's own scale per σ̂ {s['scale_per_sigma']:.3f}); checked on {s['checked_on']} others:")
    for level in s["levels"]:
        before, after = s["coverage_before"][str(level)]["overall"], s["coverage_after"][str(level)]["overall"]
        print(f"  {int(100 * level)}% intervals hold {100 * before:.1f}% of the joints before, {100 * after:.1f}% after")
    print(f"stored with {args.out or args.checkpoint} (sigma_calibration): the predictor, the expected OKS, the "
          "video filters and exported graphs use it")
    return 0


def cmd_occlusion(args: argparse.Namespace) -> int:
    """``rlepose analyze occlusion``: K×K changes of error and uncertainty; PNG + JSON."""
    from rlepose.analysis.occlusion import analyze_occlusion
    from rlepose.config import load_config

    module = _top_down_module(args.checkpoint, args)
    r = analyze_occlusion(module, load_config(args.config, args.overrides), args.out, size=args.size,
                          title=f"{Path(args.checkpoint).name}: gray square over one joint at a time")
    print(f"occluding a joint changes its {r['uncertainty']} by {r['uncertainty_rise_on_occluded_joint']:+.4f} "
          f"(other joints {r['uncertainty_change_elsewhere']:+.4f}) and its error by "
          f"{r['error_rise_on_occluded_joint_px']:+.2f} px")
    if "labelled_occluded_vs_visible" in r:
        c = r["labelled_occluded_vs_visible"]
        print(f"joints the data marks occluded (v=1) against the same joints visible: uncertainty "
              f"{c['per_joint_ratio_mean']:.2f}× (mean over {c['joints_compared']} joints; higher on "
              f"{c['joints_rising']} of them)")
    print(f"figure: {r['png']}; numbers: {Path(args.out) / 'occlusion.json'}")
    return 0


def cmd_truncation(args: argparse.Namespace) -> int:
    """``rlepose analyze truncation``: PCK inside and outside cut crops, per checkpoint; PNG + JSON."""
    from rlepose.analysis.truncation import analyze_truncation
    from rlepose.config import load_config

    modules = {}
    for path in args.checkpoint:
        module = _top_down_module(path, args)
        modules[f"{module.cfg.model.head} ({Path(path).parent.parent.name or Path(path).stem})"] = module
    s = analyze_truncation(modules, load_config(args.config, args.overrides), args.out,
                           tuple(args.fractions), args.alpha)
    for name, rows in s["tables"].items():
        print(name)
        for r in rows:
            print(f"  cut {100 * r['fraction']:4.0f}%: PCK@{args.alpha} inside {100 * r['inside']['pck']:5.1f}% "
                  f"(n={r['inside']['n']}), outside {100 * r['outside']['pck']:5.1f}% (n={r['outside']['n']})")
    print(f"figure: {s['png']}; numbers: {Path(args.out) / 'truncation.json'}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """``rlepose analyze density``: the learned density of x̄, its Gaussian/Laplace fits and,
    with ``--config``, the held-out residuals; PNG + JSON in ``--out``."""
    from rlepose.analysis.density import analyze_density
    from rlepose.losses import FlowLoss
    from rlepose.training.run import heldout_predictions, load_module

    module = load_module(args.checkpoint, trust=args.trust_checkpoint)
    if not isinstance(getattr(module, "loss", None), FlowLoss):
        raise ValueError(f"{args.checkpoint} was not trained with RLE/DLE: it has no learned density")
    residuals = None
    if args.config:
        from rlepose.config import load_config

        mu, sigma, target, weight = heldout_predictions(module, load_config(args.config, args.overrides))
        keep = weight > 0 if weight.dim() == 2 else weight.amin(-1) > 0
        residuals = ((mu - target) / sigma)[keep].numpy()
    summary = analyze_density(module.loss, args.out, residuals, title=f"{Path(args.checkpoint).name}: "
                              f"{type(module.loss).__name__}")
    for f in summary["fits"]:
        print(f"x̄{f['coordinate']}: std {f['std']:.3f}, mean |x̄| {f['mean_abs']:.3f}, kurtosis {f['kurtosis']:.2f}; "
              f"expected log-lik. model {f['loglik_model']:.3f}, Gaussian fit {f['loglik_gaussian']:.3f}, "
              f"Laplace fit {f['loglik_laplace']:.3f} nats")
    if "residuals" in summary:
        r = summary["residuals"]
        print(f"held-out x̄ ({r['n']} joints): kurtosis " + ", ".join(f"{k:.2f}" for k in r["kurtosis"])
              + " (Gaussian 3, Laplace 6); within ±" + f"{r['window']:g}: " + ", ".join(
                  f"{k:.2f}" for k in r["kurtosis_within_window"]) + f" ({100 * r['beyond_window']:.1f}% of the joints "
              f"outside); NLL per joint: learned density {r['nll_model']:.3f}, best Laplace fit "
              f"{r['nll_laplace_fit']:.3f}, best Gaussian fit {r['nll_gaussian_fit']:.3f} nats")
    print(f"written: {summary['png'] + ' and ' if 'png' in summary else ''}{Path(args.out) / 'density.json'}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the pretrained models that ``predict --model`` and ``PosePredictor.from_pretrained`` take."""
    from rlepose.hub import MODELS, SHIPPED_NAME, SHIPPED_ONE_STAGE_NAME, home, is_cached

    rows = [{"name": m.name, "source": m.source, "licence": m.licence, "dataset": m.dataset,
             "score": f"{m.metric} {m.value:.3f}", "input": f"{m.input_size[0]}×{m.input_size[1]}",
             "cached": "yes" if is_cached(m) else "no"} for m in MODELS.values()]
    rows.append({"name": SHIPPED_NAME, "source": "ships with rlepose", "licence": "Apache-2.0",
                 "dataset": "rendered figures (not for photos)", "score": "see `rlepose demo`", "input": "96×72",
                 "cached": "shipped"})
    rows.append({"name": SHIPPED_ONE_STAGE_NAME, "source": "ships with rlepose (one-stage, no detector)",
                 "licence": "Apache-2.0", "dataset": "rendered figures (not for photos)",
                 "score": "see `rlepose demo --one-stage`", "input": "128×128", "cached": "shipped"})
    print(_table(rows, [(k, k, "s") for k in ("name", "source", "licence", "dataset", "score", "input", "cached")]))
    from rlepose.hub import DETECTORS, detector_path

    dets = [{"detector": d.name, "source": "MMPose RTMPose SDK (YOLOX, ONNX)", "licence": d.licence,
             "input": f"{d.input_size[0]}×{d.input_size[1]}", "cached": "yes" if detector_path(d).is_file() else "no"}
            for d in DETECTORS.values()]
    print("\nperson detectors for `predict --detector` (also: hog, offline):")
    print(_table(dets, [(k, k, "s") for k in ("detector", "source", "licence", "input", "cached")]))
    print(f"cache: {home()} (set RLEPOSE_HOME to move it)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from rlepose.hub import SHIPPED_NAME, SHIPPED_ONE_STAGE_NAME, SHIPPED_ONE_STAGE_PATH, SHIPPED_PATH
    from rlepose.inference.media import collect_images, is_video_source, load_boxes, predict_files

    # every input is checked before a detector or a model is loaded
    videos = [src for src in args.images if is_video_source(src)]
    if videos:
        _check_videos(args, videos)
        images, boxes = [], None
    else:
        images = collect_images(args.images)
        boxes = load_boxes(args.boxes, images, args.box_threshold) if args.boxes else None
    if args.model:
        from rlepose.hub import pretrained_checkpoint

        args.checkpoint = pretrained_checkpoint(args.model)
    if not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    from rlepose.inference.boundaries import checkpoint_task

    if checkpoint_task(args.checkpoint) == "boundaries":
        return _predict_boundaries(args, images, videos)
    if args.model in (SHIPPED_NAME, SHIPPED_ONE_STAGE_NAME) or \
            Path(args.checkpoint).resolve() in (SHIPPED_PATH, SHIPPED_ONE_STAGE_PATH):
        print("note: the demo model was trained on rendered figures only; on photos its poses mean little "
              "(`rlepose models` lists models trained on COCO)", file=sys.stderr)
    predictor = _predictor(args)
    detector = None
    if not predictor.needs_boxes:
        if args.boxes or args.whole_image or args.detector:
            raise ValueError("this is a one-stage model: it finds the people itself, so --boxes, --detector and "
                             "--whole-image do not apply")
        print(f"people found by the one-stage model itself (no detector; person probability ≥ {args.box_threshold})")
    elif not args.boxes and not args.whole_image:
        from rlepose.inference.detectors import build_detector

        name = args.detector or "yolox-s"
        detector = build_detector(name, score_threshold=args.box_threshold)
        print(f"person boxes from the {name} detector (score ≥ {args.box_threshold})")
    if videos:
        return _predict_videos(args, videos, detector, predictor)
    summary = predict_files(predictor, images, args.out, boxes=boxes, detector=detector, render_dir=args.render,
                            min_score=args.score_threshold)
    print(f"ran with {predictor.describe()}")
    print(f"{summary['persons']} persons in {summary['images']} images → {args.out}"
          + (f"; drawings in {args.render}" if args.render else ""))
    for failure in summary["failed"]:
        print(f"  skipped {failure}", file=sys.stderr)
    return 1 if summary["failed"] and not summary["images"] else 0


def _predict_boundaries(args: argparse.Namespace, images: list, videos: list) -> int:
    """B-scans through a boundary model: depths and σ̂ per column to JSON, drawings with σ̂ bands."""
    from rlepose.inference.boundaries import load_boundary_model, predict_bscan_files

    if videos or args.boxes or args.whole_image or args.detector:
        raise ValueError("this is a boundary model (OCT B-scans): give images; --boxes, --detector, --whole-image "
                         "and videos do not apply")
    summary = predict_bscan_files(load_boundary_model(args.checkpoint, args.trust_checkpoint), images, args.out,
                                  args.render)
    print(f"layer boundaries of {summary['images']} B-scans → {args.out}"
          + (f"; drawings (boundaries with ±σ̂ bands) in {args.render}" if args.render else ""))
    for failure in summary["failed"]:
        print(f"  skipped {failure}", file=sys.stderr)
    return 1 if summary["failed"] and not summary["images"] else 0


def _check_videos(args: argparse.Namespace, videos: list[str]) -> None:
    if len(videos) != len(args.images):
        raise ValueError("give either videos (or a camera index) or images, not both in one call")
    if args.boxes:
        raise ValueError("--boxes is for images; a video takes --detector or --whole-image")
    if len(videos) > 1 and args.render:
        raise ValueError("--render names one output video: predict one video at a time")
    missing = [v for v in videos if not str(v).isdigit() and not Path(v).is_file()]
    if missing:
        raise FileNotFoundError(f"video not found: {', '.join(missing)}")


def _predictor(args: argparse.Namespace):
    from rlepose.inference.predictor import PosePredictor

    return PosePredictor.from_checkpoint(args.checkpoint, flip_test=not args.no_flip, backend=args.backend,
                                         onnx_path=args.onnx, trust=args.trust_checkpoint, device=args.device,
                                         precision=args.precision, detector=None, box_threshold=args.box_threshold,
                                         calibration=args.calibration)


def _predict_videos(args: argparse.Namespace, videos: list[str], detector, predictor) -> int:
    from rlepose.inference.media import predict_video

    print(f"ran with {predictor.describe()}")
    for video in videos:
        out = args.out if len(videos) == 1 else str(Path(args.out).with_suffix("")) + f"_{Path(video).stem}.json"
        s = predict_video(predictor, video, out, render=args.render, detector=detector, min_score=args.score_threshold,
                          smooth=args.smooth)
        print(f"{s['persons']} persons ({s['tracks']} tracks, smoothing {s['smooth']}) in {s['frames']} frames of "
              f"{video} ({s['fps']:.1f} frames/s) → {s['out']}" + (f"; drawn video {s['render']}" if s["render"] else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "compact":
        from rlepose.models.checkpoint import read_checkpoint, save_compact

        src = Path(args.checkpoint)
        path = save_compact(read_checkpoint(src, trust=args.trust_checkpoint),
                            args.out or src.with_name(src.stem + ".int8.pt"))
        print(f"wrote int8 weights with per-channel scales to {path} ({path.stat().st_size / 1e6:.1f} MB, "
              f"from {src.stat().st_size / 1e6:.1f} MB); every rlepose command loads it like a checkpoint")
        return 0
    from rlepose.inference.export import export_checkpoint

    path = export_checkpoint(args.checkpoint, args.out, trust=args.trust_checkpoint, precision=args.precision,
                             calibration=args.calibration)
    print(f"exported the {args.precision} inference graph (no flow, dynamic batch) to {path}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from rlepose.convert import convert_checkpoint

    path = convert_checkpoint(args.source, args.dest, args.kind, args.backbone, trust=args.trust_checkpoint)
    print(f"converted {args.kind} checkpoint → {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlepose",
        description="Human pose regression with Residual Log-likelihood Estimation (RLE): "
                    "train, evaluate, predict on photos and videos, export and convert models.",
        epilog="`rlepose COMMAND --help` lists the options of one command.")
    parser.add_argument("--verbose", action="store_true",
                        help="also show what the libraries underneath print (Lightning's banners, deprecations)")
    sub = parser.add_subparsers(dest="command", required=True)

    toy = sub.add_parser("toy", help="compare the losses on a synthetic regression problem "
                                      "(CPU, about 3 min for the default 7 losses × 3 seeds)")
    toy.add_argument("--noise", choices=["mixture", "student_t"], default="mixture")
    toy.add_argument("--losses", default="l1,l2,laplace_nll,gaussian_nll,dle,rle,rle_calibrated",
                     help="comma-separated loss names, each optionally with loss-config fields: "
                          "name:key=value:key=value, e.g. rle_calibrated:beta=1 or rle:q=gaussian")
    toy.add_argument("--steps", type=int, default=1500, help="Adam steps; the learning rate drops ×0.1 at 80%% of them")
    toy.add_argument("--flow-warmup-steps", type=int, default=None,
                     help="steps before RLE's flow term reaches µ̂ (default: until the learning rate drops; 0: never)")
    toy.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    toy.add_argument("--out", default="outputs/toy/results.json")
    toy.set_defaults(func=cmd_toy)

    tr = sub.add_parser("train", help="train a model from a YAML config")
    tr.add_argument("config")
    tr.add_argument("overrides", nargs="*", help="key.sub=value, e.g. train.lr=5e-4 data.root=/data/coco")
    tr.add_argument("--resume", help="checkpoint to resume from, or 'last'")
    tr.set_defaults(func=cmd_train)

    ca = sub.add_parser("calibrate", help="fit one σ̂ scale per joint on held-out data and store it with the checkpoint")
    ca.add_argument("--checkpoint", required=True)
    ca.add_argument("--config", required=True, help="a config whose validation split is the held-out data (split "
                                                    "in two by image: half to fit, half to check)")
    ca.add_argument("overrides", nargs="*")
    ca.add_argument("--out", help="write the calibrated checkpoint here (default: the checkpoint itself, atomically)")
    ca.add_argument("--trust-checkpoint", action="store_true",
                    help="unpickle the checkpoint fully, which can run code it contains (only for files you trust)")
    ca.set_defaults(func=cmd_calibrate)

    ev = sub.add_parser("eval", help="evaluate a checkpoint on the config's validation split")
    ev.add_argument("config")
    ev.add_argument("overrides", nargs="*")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--results", help="write predictions (COCO results format for COCO) to this JSON")
    ev.add_argument("--trust-checkpoint", action="store_true",
                    help="unpickle the checkpoint fully, which can run code it contains (only for files you trust)")
    ev.set_defaults(func=cmd_eval)

    demo = sub.add_parser("demo", help="evaluate the shipped RLE model on the embedded held-out images and draw "
                                       "(seconds); --train trains one from scratch (CPU, minutes)")
    demo.add_argument("--out", default="outputs/demo")
    demo.add_argument("--train-images", type=int, help="rendered training images (default 3000; 600 with --rcnn)")
    demo.add_argument("--val-images", type=int, default=300)
    demo.add_argument("--epochs", type=int, help="training epochs (default 4; 12 with --one-stage, 6 with --rcnn)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--compare", metavar="LOSS", nargs="+", default=[],
                      help="(implies --train) also train these losses (e.g. laplace_nll l1 heatmap_mse) the same "
                           "way on the same data")
    demo.add_argument("--train", action="store_true",
                      help="train a model from scratch (ResNet-18, --epochs) instead of evaluating the shipped one")
    demo.add_argument("--model", help="evaluate this checkpoint instead of the shipped model (e.g. one made by "
                                      "`rlepose export --format compact`)")
    demo.add_argument("--one-stage", action="store_true",
                      help="the one-stage model: every person from the whole image, no detector (the shipped one, "
                           "--model, or with --train one trained from scratch: CPU, about 8 min)")
    demo.add_argument("--rcnn", action="store_true",
                      help="the end-to-end top-down model (Table 2(c)): its own detector, RoIAlign, the RLE head; "
                           "trained from scratch (CPU, about 3 min), or --model")
    demo.set_defaults(func=cmd_demo)

    pr = sub.add_parser("predict", help="poses on images, folders, videos or a camera (top-down models with a detector "
                                        "or boxes; one-stage models on their own)")
    pr.add_argument("images", nargs="+", help="image files or folders; or a video file, or a camera index (0, 1, …)")
    which = pr.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a trained or converted checkpoint")
    which.add_argument("--model", help="a pretrained model by name (see `rlepose models`), downloaded on first use; "
                                       "`demo`, `demo-one-stage`: the small models that ship with rlepose (rendered "
                                       "figures only)")
    boxes = pr.add_mutually_exclusive_group()
    boxes.add_argument("--detector",
                       help="person detector: yolox-tiny/s/m/l/x (MMPose's ONNX, downloaded on first use; default "
                            "yolox-s), hog (OpenCV, offline, weak) or a YOLOX .onnx path; a one-stage model needs none")
    boxes.add_argument("--boxes", help="COCO detection-results JSON (image_id → file by name or id) instead of a detector")
    boxes.add_argument("--whole-image", action="store_true", help="one person box covering each whole image")
    pr.add_argument("--box-threshold", "--box-score-threshold", dest="box_threshold", type=float, default=0.3,
                    help="keep person boxes (from the detector or --boxes; a one-stage model's people) scoring at "
                         "least this; default 0.3, the bbox_thr of MMPose's top-down demos")
    pr.add_argument("--score-threshold", type=float, default=0.0,
                    help="keep people whose expected OKS (what the model believes its pose's OKS to be, from σ̂) "
                         "is at least this; results are ranked by it")
    pr.add_argument("--out", default="predictions.json", help="COCO-format results JSON (with expected_oks)")
    pr.add_argument("--render", help="folder for images with drawn skeletons; for a video, the drawn video (.mp4)")
    pr.add_argument("--backend", choices=["auto", "torch", "onnxruntime"], default="auto",
                    help="auto (default): torch on a CUDA GPU, else ONNX Runtime when installed, else torch")
    pr.add_argument("--onnx", help="ONNX graph for onnxruntime (default: beside the checkpoint, exported on first use)")
    pr.add_argument("--device", help="torch backend: cpu, cuda, cuda:1, … (default: cuda when available)")
    pr.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16", "int8"], default="auto",
                    help="auto (default): fp16 on a CUDA GPU, bf16 on a CPU with AMX or AVX512-BF16, else fp32 "
                         "(ONNX Runtime); fp32, bf16, fp16 (GPUs), or int8 (a quantized ONNX graph, on request); "
                         "the choice is printed with the summary")
    pr.add_argument("--calibration", help="int8: person crops to calibrate on (a folder of images, each one person, "
                                          "or a COCO JSON with boxes); default: rendered figures")
    pr.add_argument("--smooth", choices=["auto", "online", "offline", "none"], default="auto",
                    help="videos: each person is tracked (track_id) and its joints smoothed by their own σ̂: online "
                         "(a Kalman filter, frame by frame), offline (the RTS smoother over whole tracks), none; "
                         "auto (default): offline for files, online for cameras")
    pr.add_argument("--no-flip", action="store_true", help="skip the flip test")
    pr.add_argument("--trust-checkpoint", action="store_true",
                    help="unpickle the checkpoint fully, which can run code it contains (only for files you trust)")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", help="export the inference graph (no flow), or a small int8 checkpoint")
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--format", choices=["onnx", "compact"], default="onnx",
                    help="onnx: the inference graph; compact: the weights as int8 with per-channel scales "
                         "(a quarter of the size, e.g. to ship a model), loaded like any checkpoint")
    ex.add_argument("--out", help="default: the checkpoint path with .onnx, .int8.onnx or .int8.pt")
    ex.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                    help="onnx: fp32, or int8 (statically quantized by ONNX Runtime, calibrated on --calibration)")
    ex.add_argument("--calibration", help="int8: person crops to calibrate on (a folder of images, each one person, "
                                          "or a COCO JSON with boxes); default: rendered figures")
    ex.add_argument("--trust-checkpoint", action="store_true",
                    help="unpickle the checkpoint fully, which can run code it contains (only for files you trust)")
    ex.set_defaults(func=cmd_export)

    an = sub.add_parser("analyze", help="figures and numbers about the learned uncertainty")
    an_sub = an.add_subparsers(dest="analysis", required=True)

    def analysis(name: str, func, help: str, config_help: str = "a config whose validation split is analysed",
                 config_required: bool = True, many: bool = False) -> argparse.ArgumentParser:
        p = an_sub.add_parser(name, help=help)
        p.add_argument("--checkpoint", required=True, nargs="+" if many else None,
                       help="one or more (e.g. a regression and a heatmap model)" if many else None)
        p.add_argument("--config", required=config_required, help=config_help)
        p.add_argument("overrides", nargs="*")
        p.add_argument("--out", default="outputs/analyze")
        p.add_argument("--trust-checkpoint", action="store_true", help="unpickle the checkpoint fully (trusted files only)")
        p.set_defaults(func=func)
        return p

    analysis("density", cmd_analyze, "the learned density of x̄ against Gaussian and Laplace fits",
             "a config whose held-out split gives residuals (top-down or lifting)", config_required=False)
    analysis("calibration", cmd_calibration, "reliability of σ̂, coverage of the learned intervals, confidence vs OKS")
    occ = analysis("occlusion", cmd_occlusion, "a gray square over each joint: K×K changes of error and σ̂")
    occ.add_argument("--size", type=float, default=0.2, help="square side as a fraction of the person box height")
    tr = analysis("truncation", cmd_truncation, "boxes cut from below: PCK of joints inside and outside the crop",
                  many=True)
    tr.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.2, 0.3, 0.4])
    tr.add_argument("--alpha", type=float, default=0.1, help="PCK threshold as a fraction of the box's longer side")

    models = sub.add_parser("models", help="list pretrained models (name, source, licence, dataset, score, cached)")
    models.set_defaults(func=cmd_models)

    cv = sub.add_parser("convert", help="import a checkpoint of the official RLE code or of MMPose")
    cv.add_argument("source")
    cv.add_argument("dest")
    cv.add_argument("--from", dest="kind", choices=["official", "mmpose"], required=True)
    cv.add_argument("--backbone", default="resnet50")
    cv.add_argument("--trust-checkpoint", action="store_true",
                    help="unpickle the checkpoint fully, which can run code it contains (only for files you trust)")
    cv.set_defaults(func=cmd_convert)
    return parser


_NOTICE_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                   "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed")


def quiet_libraries(quiet: bool = True) -> None:
    """Leave out what Lightning prints on every run (device banners, tips, notices about
    logging intervals and existing folders) and known deprecation notices of the libraries
    underneath; errors and rlepose's own output are untouched. ``quiet=False`` lets them through."""
    import logging
    import warnings

    if not quiet:
        for name in _NOTICE_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        return

    # the loggers Lightning's notices go through; set on them (not on "lightning", whose level
    # Lightning resets when it is imported)
    for name in _NOTICE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"lightning(\.|$)")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may stand anywhere on the line, also after options
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    quiet_libraries(not args.verbose)
    from rlepose.inference.detectors import NoDetectorError
    from rlepose.hub import DownloadError

    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, DownloadError, NoDetectorError) as e:  # DataError and ConfigError are ValueErrors
        print(f"rlepose {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
