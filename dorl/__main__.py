from dorl.cli import main

main()
