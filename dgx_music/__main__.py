from dgx_music.cli.main import main

raise SystemExit(main())
