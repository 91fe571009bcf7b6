from tokenloom.app.cli import main

main()
