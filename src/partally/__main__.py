from partally._cli import main

raise SystemExit(main())
