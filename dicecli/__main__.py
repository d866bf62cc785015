from dicecli.cli import main

main()
