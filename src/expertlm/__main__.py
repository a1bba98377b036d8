from expertlm.cli import main

# Guarded: `data prepare` starts worker processes with "spawn", which imports this module again.
if __name__ == "__main__":
    main()
