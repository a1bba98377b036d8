from expertlm.cli import main

main()
