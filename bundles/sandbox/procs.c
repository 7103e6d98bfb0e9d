/*
 * Stage-1 static C workload for hull-sandbox (issue 6): fork, execve, waitpid,
 * pipes, signals (sigaction handlers, kill, SIGCHLD) and mmap (anonymous,
 * file-backed, and MAP_SHARED anonymous memory shared across fork).
 *
 * The output is deterministic (no pids or times) and the program exits 6, so
 * the differential suite compares a native run with a sandboxed one exactly.
 * Each step prints before forking and flushes stdout, so no buffered text is
 * duplicated into a child.
 *
 * Build: gcc -static -O2 -Wall -Wextra -o procs procs.c
 * Usage: procs [STEP...]    run the named steps (pipe exec signals sigwait mmap), or all
 *        procs child ARG   the re-exec'd child: prints ARG, exits 17
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t usr1_count;
static volatile sig_atomic_t chld_count;

static void die(const char *what)
{
	fprintf(stderr, "procs: %s: %s\n", what, strerror(errno));
	exit(100);
}

static void on_usr1(int sig)
{
	(void)sig;
	usr1_count++;
}

static void on_chld(int sig)
{
	(void)sig;
	chld_count++;
}

static void report(const char *what, int status)
{
	if (WIFEXITED(status))
		printf("%s: exited %d\n", what, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		printf("%s: killed by signal %d\n", what, WTERMSIG(status));
	else
		printf("%s: status 0x%x\n", what, status);
	fflush(stdout);
}

static pid_t xfork(void)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	return pid;
}

/* A child writes through a pipe; the parent reads until EOF. */
static void step_pipe(void)
{
	int fds[2];
	if (pipe(fds) < 0)
		die("pipe");
	pid_t pid = xfork();
	if (pid == 0) {
		close(fds[0]);
		for (int i = 0; i < 3; i++)
			dprintf(fds[1], "chunk %d from child\n", i);
		_exit(0);
	}
	close(fds[1]);
	char buf[256];
	size_t total = 0;
	ssize_t n;
	while ((n = read(fds[0], buf + total, sizeof(buf) - 1 - total)) > 0)
		total += (size_t)n;
	if (n < 0)
		die("read pipe");
	buf[total] = '\0';
	close(fds[0]);
	int status;
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid pipe child");
	printf("pipe carried %zu bytes:\n%s", total, buf);
	report("pipe child", status);
}

/* fork + execve of /bin/echo, then of this program itself, with stdout in a pipe. */
static void step_exec(const char *self)
{
	pid_t pid = xfork();
	if (pid == 0) {
		char *argv[] = {"echo", "hello", "from", "execve", NULL};
		char *envp[] = {"PATH=/bin", NULL};
		execve("/bin/echo", argv, envp);
		_exit(127);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid echo");
	report("echo", status);

	int fds[2];
	if (pipe(fds) < 0)
		die("pipe");
	pid = xfork();
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		char *argv[] = {(char *)self, "child", "re-executed", NULL};
		char *envp[] = {NULL};
		execve(self, argv, envp);
		_exit(127);
	}
	close(fds[1]);
	char buf[128] = {0};
	ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
	close(fds[0]);
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid self");
	printf("self-exec said %zd bytes: %s", n, buf);
	report("self-exec", status);

	pid = xfork();
	if (pid == 0) {
		char *argv[] = {"missing", NULL};
		char *envp[] = {NULL};
		execve("/no/such/program", argv, envp);
		_exit(errno == ENOENT ? 42 : 43);
	}
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid missing");
	report("execve of a missing program", status);
}

/* sigaction handlers, kill to self, blocked and pending signals, SIGCHLD, kill of a child. */
static void step_signals(void)
{
	struct sigaction sa = {0};
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		die("sigaction SIGUSR1");
	sa.sa_handler = on_chld;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		die("sigaction SIGCHLD");

	kill(getpid(), SIGUSR1);
	kill(getpid(), SIGUSR1);
	printf("SIGUSR1 handled %d times\n", (int)usr1_count);

	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, &old);
	kill(getpid(), SIGUSR1);
	sigset_t pending;
	sigpending(&pending);
	printf("while blocked: handled %d, pending %d\n", (int)usr1_count,
	       sigismember(&pending, SIGUSR1));
	sigprocmask(SIG_SETMASK, &old, NULL);
	printf("after unblock: handled %d\n", (int)usr1_count);

	/* The child waits for SIGTERM; SIGCHLD must reach the parent once it dies. */
	chld_count = 0;
	int ready[2];
	if (pipe(ready) < 0)
		die("pipe");
	pid_t pid = xfork();
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		close(ready[0]);
		if (write(ready[1], "r", 1) != 1)
			_exit(99);
		for (;;)
			pause();
	}
	close(ready[1]);
	char c;
	ssize_t r;
	while ((r = read(ready[0], &c, 1)) < 0 && errno == EINTR)
		;
	close(ready[0]);
	printf("child is ready: %s\n", r == 1 && c == 'r' ? "yes" : "no");
	kill(pid, SIGTERM);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid sigterm child");
	report("child sent SIGTERM", status);
	printf("SIGCHLD handled: %s\n", chld_count > 0 ? "yes" : "no");

	pid = xfork();
	if (pid == 0)
		_exit(3);
	pid_t got;
	while ((got = waitpid(-1, &status, 0)) < 0 && errno == EINTR)
		;
	printf("waitpid(-1) returned the child: %s\n", got == pid ? "yes" : "no");
	report("any child", status);
	got = waitpid(-1, &status, WNOHANG);
	printf("waitpid with no children: %d (%s)\n", (int)got, got < 0 && errno == ECHILD ? "ECHILD" : "?");
	signal(SIGCHLD, SIG_DFL);
}

/* Synchronous signal acceptance: sigwait, sigtimedwait with a timeout, and a
 * signal sent by a child to its blocked parent. */
static void step_sigwait(void)
{
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, &old);
	kill(getpid(), SIGUSR2);
	int sig = 0;
	if (sigwait(&set, &sig) != 0)
		die("sigwait");
	printf("sigwait got %s\n", sig == SIGUSR2 ? "SIGUSR2" : "another signal");

	struct timespec ts = {0, 10 * 1000 * 1000};
	int got = sigtimedwait(&set, NULL, &ts);
	printf("sigtimedwait with nothing pending: %d (%s)\n", got, got < 0 && errno == EAGAIN ? "EAGAIN" : "?");

	pid_t pid = xfork();
	if (pid == 0) {
		kill(getppid(), SIGUSR2);
		_exit(0);
	}
	siginfo_t info;
	got = sigwaitinfo(&set, &info);
	printf("sigwaitinfo: %s, sent by the child: %s\n", got == SIGUSR2 ? "SIGUSR2" : "?",
	       info.si_pid == pid ? "yes" : "no");
	int status;
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid sigwait child");
	report("signalling child", status);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* Anonymous, file-backed, and MAP_SHARED anonymous mappings across fork. */
static void step_mmap(void)
{
	size_t len = 1 << 20;
	unsigned char *anon = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED)
		die("mmap anonymous");
	unsigned long sum = 0;
	for (size_t i = 0; i < len; i += 4096)
		sum += anon[i];
	for (size_t i = 0; i < len; i++)
		anon[i] = (unsigned char)(i * 7);
	for (size_t i = 0; i < len; i += 1000)
		sum += anon[i];
	printf("anonymous mapping: zero-filled then written, checksum %lu\n", sum);
	if (mprotect(anon, 4096, PROT_READ) < 0)
		die("mprotect");
	if (munmap(anon, len) < 0)
		die("munmap");

	const char *path = "/tmp/procs-mmap.txt";
	const char text[] = "file-backed mapping contents\n";
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("open mmap file");
	if (write(fd, text, sizeof(text) - 1) != (ssize_t)sizeof(text) - 1)
		die("write mmap file");
	char *file = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	if (file == MAP_FAILED)
		die("mmap file");
	close(fd);
	printf("file mapping reads: %.*s", (int)(sizeof(text) - 1), file);
	munmap(file, 4096);
	unlink(path);

	int *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int *private = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED || private == MAP_FAILED)
		die("mmap shared");
	shared[0] = 1;
	private[0] = 1;
	pid_t pid = xfork();
	if (pid == 0) {
		shared[0] = 1234;
		private[0] = 5678;
		_exit(0);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid mmap child");
	printf("after the child wrote: shared %d, private %d\n", shared[0], private[0]);
	munmap(shared, 4096);
	munmap(private, 4096);
}

static const char *self_path;

static void step_exec_self(void)
{
	step_exec(self_path);
}

static const struct {
	const char *name;
	void (*run)(void);
} steps[] = {
	{"pipe", step_pipe},
	{"exec", step_exec_self},
	{"signals", step_signals},
	{"sigwait", step_sigwait},
	{"mmap", step_mmap},
};
#define NSTEPS (sizeof(steps) / sizeof(steps[0]))

static int run_step(const char *name)
{
	for (size_t i = 0; i < NSTEPS; i++) {
		if (strcmp(steps[i].name, name) == 0) {
			printf("== %s\n", name);
			steps[i].run();
			return 0;
		}
	}
	fprintf(stderr, "procs: unknown step %s\n", name);
	return -1;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "child") == 0) {
		printf("child argv[2]=%s\n", argv[2]);
		return 17;
	}
	self_path = argv[0];
	/* Fully buffered even on a terminal, so the fork paths are exercised the same way. */
	setvbuf(stdout, NULL, _IOFBF, 4096);
	if (argc < 2) {
		for (size_t i = 0; i < NSTEPS; i++)
			run_step(steps[i].name);
	} else {
		for (int i = 1; i < argc; i++)
			if (run_step(argv[i]) < 0)
				return 2;
	}
	printf("done\n");
	return 6;
}
