from anvil_cli.main import main

main()
