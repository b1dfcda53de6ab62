from partally.cli import main

raise SystemExit(main())
