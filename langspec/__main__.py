from langspec.cli import main

main()
