from sufd.cli.sufd import main

raise SystemExit(main())
