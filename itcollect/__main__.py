from itcollect.cli import run

run()
