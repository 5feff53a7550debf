"""``python -m ttsnn <command>``: the same as the ``ttsnn`` console script."""

from ttsnn.sw.commands.ttsnn import console_main

if __name__ == "__main__":
    console_main()
