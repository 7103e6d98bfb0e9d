/*
 * Benchmark: open + read + close of one small file, repeated.
 * usage: openread [N] [PATH]   (default 20000 rounds of /etc/passwd)
 * Prints "openread <ns> ns/round" measured with CLOCK_MONOTONIC.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000;
	const char *path = argc > 2 ? argv[2] : "/etc/passwd";
	char buf[4096];
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			perror(path);
			return 1;
		}
		if (read(fd, buf, sizeof(buf)) <= 0) {
			perror("read");
			return 1;
		}
		close(fd);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	printf("openread %.0f ns/round\n", ns / (double)n);
	return 0;
}
