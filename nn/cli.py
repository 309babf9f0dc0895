"""The `numbanet` command: info, bench, train, evaluate, predict."""
import argparse
import sys


def _info(args):
    from kernels import backend
    for key, value in backend.describe().items():
        print(f"{key:20s} {value}")
    if args.kernels:
        from kernels.cuda import resources
        reports = [resources.check_kernel(*entry, fma_loop=True) for entry in resources.registered_kernels()]
        print()
        print(resources.format_table(reports))
        return 0 if all(r["ok"] for r in reports) else 1
    return 0


def _bench(args):
    import benchmarks
    benchmarks.run(args.suites, device=args.device, output_dir=args.output, plot=args.plot,
                   quick=args.quick, repeats=args.repeats, only=args.only)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="numbanet", description="Numba CUDA kernels for deep learning.")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="backend, GPU and library versions")
    info.add_argument("--kernels", action="store_true",
                      help="also compile every kernel for sm_90 and print registers, spills, local memory, f64")
    info.set_defaults(handler=_info)

    bench = commands.add_parser("bench", help="our kernels against the vendor libraries, same process")
    bench.add_argument("suites", nargs="*",
                       help="gemm, pointwise, conv, pool, rnn, ctc, embedding, layer_norm, train (default: all)")
    bench.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    bench.add_argument("--output", default="bench-results", help="folder for the JSON (and PNG) reports")
    bench.add_argument("--plot", action="store_true", help="draw the speed ratios as a PNG")
    bench.add_argument("--quick", action="store_true", help="fewer, smaller cases")
    bench.add_argument("--repeats", type=int, default=15)
    bench.add_argument("--only", metavar="TEXT", help="run only the cases whose label contains TEXT")
    bench.set_defaults(handler=_bench)

    for name in DELEGATED:
        sub = commands.add_parser(name, help=f"{name} a model (see `numbanet {name} --help`)", add_help=False)
        sub.add_argument("rest", nargs=argparse.REMAINDER)
        sub.set_defaults(handler=lambda args, name=name: _delegate(name, args.rest))
    return parser


def _delegate(command, argv):
    if command == "train":
        from nn import train
        return train.train_main(argv)
    from nn import inference
    return getattr(inference, f"{command}_main")(argv)


DELEGATED = ("train", "evaluate", "predict")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        # straight to the command's own parser: argparse's REMAINDER would not pass on a leading
        # option such as `numbanet train --help`
        return _delegate(argv[0], argv[1:]) or 0
    args = build_parser().parse_args(argv)
    return args.handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
