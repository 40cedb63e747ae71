from lesseg.cli import main

raise SystemExit(main())
