from experiments.cli import main
from experiments.shutdown import leave

main()
leave(0)
