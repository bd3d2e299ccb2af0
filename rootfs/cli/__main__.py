from rootfs.cli import main

main()
