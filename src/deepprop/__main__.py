from deepprop.cli.main import main

raise SystemExit(main())
