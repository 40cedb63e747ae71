"""The `lesseg` command: parses arguments and dispatches; the work lives in the library.

Only commands that work are listed. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lesseg import __version__
from lesseg.errors import LessegError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line (no usage dump), exit status 2."""

    def error(self, message: str):  # noqa: D102
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {text}")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lesseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lesseg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    data = commands.add_parser("data", help="generate, check and describe datasets")
    data_cmds = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=_Parser)
    data_cmds.required = True

    synth = data_cmds.add_parser("synth", help="write a synthetic dataset in the generic folder layout")
    synth.add_argument("out", type=Path, help="output folder (created; existing files are overwritten)")
    synth.add_argument("--images", type=int, default=500, help="number of images (default 500)")
    synth.add_argument(
        "--classes", type=int, default=8, help="entries in classes.json, background included (default 8)"
    )
    synth.add_argument(
        "--seed", type=int, default=0, help="the output is byte-identical per seed (default 0)"
    )
    synth.add_argument(
        "--background",
        choices=("textured", "none"),
        default="textured",
        help="'textured': a background class (VOC-like); 'none': stuff classes fill the image",
    )
    synth.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    synth.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of images in val.txt (default 0.2)"
    )
    synth.set_defaults(func=_cmd_synth)

    check = data_cmds.add_parser(
        "check", help="list every problem of a dataset and print per-split statistics"
    )
    check.add_argument("path", type=_existing_dir, help="the dataset's top folder")
    check.add_argument(
        "--format",
        default="auto",
        help="auto (default), folder, voc, cityscapes, cocostuff, cocostuff10k, ade20k or camvid",
    )
    check.add_argument(
        "-o",
        "--option",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a reader option, e.g. protocol=27 (Cityscapes, COCO-Stuff) or masks=plain (VOC)",
    )
    check.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the statistics and problems as JSON"
    )
    check.set_defaults(func=_cmd_check)

    run = commands.add_parser(
        "run", help="run a method's pipeline; finished stages are skipped, a killed run resumes"
    )
    run.add_argument("config", help="a YAML config file (configs/...), then KEY=VALUE overrides")
    run.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="e.g. cams.scales=[1.0] train.epochs=3"
    )
    run.add_argument("--stage", help="run only this stage (again), e.g. cams or evaluate")
    run.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    run.set_defaults(func=_cmd_run)

    predict = commands.add_parser(
        "predict", help="segment new images with a finished run: class-index PNG masks and overlays"
    )
    predict.add_argument("run", type=Path, help="a run folder (runs/NAME) whose segmenter stage finished")
    predict.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    predict.add_argument("--out", type=Path, required=True, help="output folder (created)")
    predict.add_argument(
        "--scales", type=_scales, help="test-time scales, e.g. 0.5,0.75,1,1.25,1.5 (default: the run's)"
    )
    flip = predict.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None, help="add flipped passes")
    flip.add_argument("--no-flip", dest="flip", action="store_false", help="no flipped passes")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    predict.add_argument(
        "--crf", type=int, metavar="N", help="dense-CRF iterations on the probabilities (Puzzle-CAM: 10; "
        "needs the crf extra; default: the run's segmenter.test_crf_iterations)",
    )  # fmt: skip
    slide = predict.add_mutually_exclusive_group()
    slide.add_argument(
        "--slide-above", type=float, metavar="MP", help="predict images of more than MP megapixels by sliding "
        "windows, memory bounded by the window (0: every image; default: the run's segmenter.test_slide_above)",
    )  # fmt: skip
    slide.add_argument("--no-slide", action="store_true", help="whole images, whatever their size")
    predict.add_argument("--window", type=int, metavar="PX", help="sliding-window side (default: the run's)")
    predict.add_argument("--stride", type=int, metavar="PX", help="sliding-window step (default: the run's)")
    predict.add_argument(
        "--stop-on-error", action="store_true",
        help="stop at the first unreadable image (default: predict every readable one, list the others, exit 2)",
    )  # fmt: skip
    predict.set_defaults(func=_cmd_predict)

    ev = commands.add_parser(
        "eval", help="score a finished run on any split with masks (nothing is retrained or changed)"
    )
    ev.add_argument("run", type=Path, help="a finished run folder (runs/NAME)")
    ev.add_argument(
        "--split", help="the split to score, e.g. test or val+train (default: the run's val split)"
    )
    ev.add_argument("--data-root", type=Path, help="the dataset folder (default: the run's data.root)")
    ev.add_argument("--scales", type=_scales, help="test-time scales (default: the run's)")
    ev_flip = ev.add_mutually_exclusive_group()
    ev_flip.add_argument("--flip", dest="flip", action="store_true", default=None, help="add flipped passes")
    ev_flip.add_argument("--no-flip", dest="flip", action="store_false", help="no flipped passes")
    ev.add_argument("--crf", type=int, metavar="N", help="dense-CRF iterations (needs the crf extra)")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    ev.set_defaults(func=_cmd_eval)

    weights = commands.add_parser(
        "weights", help="turn checkpoints with other key names into timm-keyed model.weights files"
    )
    weights_cmds = weights.add_subparsers(dest="weights_command", metavar="SUBCOMMAND", parser_class=_Parser)
    weights_cmds.required = True
    imp = weights_cmds.add_parser("import", help="convert a known source that an installed package ships")
    imp.add_argument("name", help="a known source: " + ", ".join(_known_sources()))
    imp.add_argument("out", type=Path, help="output .pth file, for model.weights=OUT")
    imp.set_defaults(func=_cmd_weights_import)
    conv = weights_cmds.add_parser(
        "convert", help="pair a checkpoint's tensors in order with a timm architecture's"
    )
    conv.add_argument(
        "source", type=Path, help="a .pth/.pt/.bin/.safetensors state_dict (e.g. torchvision's)"
    )
    conv.add_argument("arch", help="the timm architecture, e.g. resnet50 or mobilenetv2_100")
    conv.add_argument("out", type=Path, help="output .pth file, for model.weights=OUT")
    conv.set_defaults(func=_cmd_weights_convert)

    train = commands.add_parser(
        "train", help="train a method's network (resumes a killed run; runs under torchrun as it is)"
    )
    train.add_argument("config", help="a YAML config file (configs/...), then KEY=VALUE overrides")
    train.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="e.g. optim.lr=0.01 data.batch_size=8"
    )
    train.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    train.set_defaults(func=_cmd_train)
    return parser


def _scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not scales or min(scales) <= 0:
        raise argparse.ArgumentTypeError(f"scales must be positive, got {text!r}")
    return scales


def _cmd_predict(args) -> int:
    from lesseg.api import load_run
    from lesseg.predict import PredictionErrors, prepare_output_dir

    prepare_output_dir(args.out)  # before the model loads: a bad --out is one line, at once
    slide_above = float("inf") if args.no_slide else args.slide_above
    predictor = load_run(args.run, scales=args.scales, flip=args.flip, device=args.device,
                         crf_iterations=args.crf, slide_above=slide_above, window=args.window,
                         stride=args.stride)  # fmt: skip
    say = lambda line: print(f"lesseg: skipped: {line}", file=sys.stderr)  # noqa: E731
    try:
        written = predictor.predict_files(
            args.images, args.out, stop_on_error=args.stop_on_error, on_error=say
        )
    except PredictionErrors as e:
        print(f"{len(e.written)} masks (class-index PNG) and overlays (<name>_overlay.png) in {args.out}")
        print(
            f"lesseg: error: {len(e.failed)} image(s) could not be predicted (listed above)", file=sys.stderr
        )
        return EXIT_USAGE
    print(f"{len(written)} masks (class-index PNG) and overlays (<name>_overlay.png) in {args.out}")
    return 0


def _cmd_eval(args) -> int:
    from lesseg.api import evaluate_run

    entry = evaluate_run(args.run, split=args.split, data_root=args.data_root, device=args.device,
                         scales=args.scales, flip=args.flip, crf_iterations=args.crf)  # fmt: skip
    split = args.split or "the val split"
    print(
        f"{'scored':<14} {'mIoU':>6} {'pixel acc':>9}  images {entry['images']} of {split} in {entry['data_root']}"
    )
    print(f"{'prediction':<14} {entry['miou']:>6.3f} {entry['pixel_acc']:>9.3f}")
    for name, ref in entry["references"].items():
        print(f"{name:<14} {ref['miou']:>6.3f} {'':>9}  (reads the masks: a diagnostic)" if name == "largest_class"
              else f"{name:<14} {ref['miou']:>6.3f}")  # fmt: skip
    tags = entry["references"]["random_tags"]["miou"]
    if entry["miou"] < tags:
        print(f"the prediction ({entry['miou']:.3f}) is BELOW the random-among-tags reference ({tags:.3f})")
    print(f"written to {args.run / 'metrics.json'} under eval")
    return 0


def _known_sources() -> list[str]:
    from lesseg.models.convert import KNOWN_SOURCES

    return sorted(KNOWN_SOURCES)


def _said_weights(out: Path) -> int:
    import torch

    record = torch.load(out, map_location="meta", weights_only=True)["conversion"]
    print(f"{out}: {len(record['pairs'])} tensors of {record['arch']} from {record['source']}; "
          f"use model.backbone={record['arch']} model.weights={out}")  # fmt: skip
    return 0


def _cmd_weights_import(args) -> int:
    from lesseg.models.convert import import_known

    return _said_weights(import_known(args.name, args.out))


def _cmd_weights_convert(args) -> int:
    from lesseg.models.convert import convert_file

    return _said_weights(convert_file(args.source, args.arch, args.out))


def _cmd_synth(args) -> int:
    from lesseg.data.synth import generate

    stats = generate(
        args.out,
        images=args.images,
        classes=args.classes,
        seed=args.seed,
        background=args.background,
        size=args.size,
        val_fraction=args.val_fraction,
    )
    print(stats.format())
    return 0


def _cmd_check(args) -> int:
    from lesseg.data import read_dataset
    from lesseg.data.check import check_dataset
    from lesseg.io import atomic_write_json

    source = read_dataset(args.path, format=args.format, **dict(args.option))
    report = check_dataset(source)
    print(report.format())
    if args.json:
        names = source.classes.classes
        atomic_write_json(
            args.json,
            {
                "root": str(source.root),
                "format": source.format,
                "classes": source.classes.to_dict(),
                "splits": {k: v.to_dict(names) for k, v in report.stats.items()},
                "problems": report.problems,
            },
        )
    return 0 if report.clean else 1


def _config(args):
    from lesseg.config import format_config, load_config

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(format_config(cfg), end="")
        return None
    return cfg


def _cmd_train(args) -> int:
    cfg = _config(args)
    if cfg is not None:
        from lesseg.api import train

        run_dir = train(cfg)
        weights = sorted((run_dir / "checkpoints").glob("*_final.pt"), key=lambda p: p.stat().st_mtime)
        print(f"trained: {weights[-1]} (log: {run_dir / 'log.jsonl'})")
    return 0


def _cmd_run(args) -> int:
    cfg = _config(args)
    if cfg is not None:
        from lesseg.api import run
        from lesseg.eval import format_headline, read_metrics

        run_dir = run(cfg, stage=args.stage)
        if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for all
            return 0
        metrics = read_metrics(run_dir)
        if metrics:
            print(format_headline(metrics))
        report = run_dir / "report.html"
        if report.is_file():
            print(f"report: {report}")
        print(f"run folder: {run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may follow options (`train cfg.yaml --print-config a=1`); argparse stops at the option
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except LessegError as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank stops, rank 0 says why
            print(f"lesseg: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
