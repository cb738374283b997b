import sys

try:
    from dynastream.stream.cli import main
except KeyboardInterrupt:       # Ctrl-C before main() handles signals itself
    sys.stderr.write("dynastream: interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
