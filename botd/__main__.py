from botd.cli import main

main()
