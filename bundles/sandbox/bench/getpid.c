/*
 * Benchmark: latency of a raw getpid system call.
 * usage: getpid [N]   (default 100000 calls)
 * Prints "getpid <ns> ns/call" measured with CLOCK_MONOTONIC around the loop.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		syscall(SYS_getpid);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	printf("getpid %.0f ns/call\n", ns / (double)n);
	return 0;
}
