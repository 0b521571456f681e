import sys

from monitor.demo.run import main

sys.exit(main())
