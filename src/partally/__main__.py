import sys

try:
    from partally.cli import main
except KeyboardInterrupt:  # Ctrl-C while the command line is still being imported
    print("partally: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
