from sufd.cli import main

raise SystemExit(main())
