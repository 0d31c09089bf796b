from ._entry import run

if __name__ == "__main__":  # (not when a worker process prepares its main module)
    run()
