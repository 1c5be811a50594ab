from cloudml.cli import main

main()
