/*
 * Benchmark: fork + execve + waitpid of a program, repeated.
 * usage: forkexec [N] [PROGRAM]   (default 200 rounds of /bin/true)
 * Prints "forkexec <us> us/round" measured with CLOCK_MONOTONIC.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 200;
	char *prog = argc > 2 ? argv[2] : "/bin/true";
	char *child_argv[] = {prog, NULL};
	char *envp[] = {NULL};
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			execve(prog, child_argv, envp);
			_exit(127);
		}
		int status;
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "forkexec: %s failed (status 0x%x)\n", prog, status);
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	printf("forkexec %.1f us/round\n", ns / (double)n / 1000.0);
	return 0;
}
