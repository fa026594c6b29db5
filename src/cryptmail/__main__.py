from cryptmail.cli import main

raise SystemExit(main())
