#!/usr/bin/perl

# `make run` as the seeds use it: nginx in the foreground, the access log
# and errors on the terminal while you push and pull, Ctrl-C stops it.
# The test runs `make run` (on a free port, with a store, run directory and
# module of its own) in a process group of its own, as a shell runs a
# foreground job; a push and a pull appear as access log lines on its
# stdout, an error on its stderr; SIGINT to the group (what Ctrl-C sends)
# stops nginx the clean way: make and every nginx process exit, the port is
# closed and nginx removed its pid file.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools run_cmd slurp spew free_port);

need_tools(qw(make curl));

my $tmp = tempdir('make-run-XXXXXXXX', TMPDIR => 1, CLEANUP => !$ENV{REGTEST_LEAVE});
my $port = free_port();
my $run = "$tmp/run";
my $data = "$tmp/data";

# -o: the module is the one under test, already built; deps only checks
# packages (it would install missing ones).  Under REGTEST_ASAN the
# sanitizer runtime is preloaded into nginx alone, through NGINX (the
# recipe's command prefix): LD_PRELOAD takes a colon-separated list.
my %asan = RegTest::nginx_env($run, "$tmp/stderr");
my $nginx_cmd = join(' ', (%asan ? ('env', map { "$_=" . ($asan{$_} =~ tr/ /:/r) }
                                             sort keys %asan) : ()),
                     $ENV{REGTEST_NGINX} || '/usr/sbin/nginx');

my @make = ('make', '--no-print-directory', '-C', $RegTest::REPO,
            '-o', $RegTest::MODULE, 'run', "PORT=$port", "DATA=$data",
            "RUNDIR=$run", "MODULE=$RegTest::MODULE", "NGINX=$nginx_cmd");

my $pid = fork();
die "fork: $!\n" unless defined $pid;

if ($pid == 0) {
    setpgrp(0, 0);
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', "$tmp/stdout";
    open STDERR, '>', "$tmp/stderr";
    exec(@make) or POSIX::_exit(127);
}

sub answers {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp');
    close $s if $s;
    return $s ? 1 : 0;
}

sub wait_for {
    my ($what, $seconds) = @_;
    for (1 .. $seconds * 10) {
        return 1 if $what->();
        select undef, undef, undef, 0.1;
    }
    return 0;
}

my $up = wait_for(sub { answers() || waitpid($pid, WNOHANG) }, 120)
         && answers();
ok($up, "make run: nginx answers on 127.0.0.1:$port")
    or diag(slurp("$tmp/stdout") . slurp("$tmp/stderr"));

SKIP: {
    skip 'make run did not start', 9 unless $up;

    my $base = "http://127.0.0.1:$port";
    my $blob = "make run blob\n";
    spew("$tmp/blob", $blob);
    my $d = RegTest::digest($blob);

    my ($rc, $out) = run_cmd(['curl', '-sS', '-o', '/dev/null', '-w',
                              '%{http_code}', '-A', 'make-run-test',
                              '--data-binary', "\@$tmp/blob",
                              "$base/v2/seed/app/blobs/uploads/?digest=$d"]);
    is($out, '201', 'a push');

    ($rc, $out) = run_cmd(['curl', '-sS', '-A', 'make-run-test',
                           "$base/v2/seed/app/blobs/$d"]);
    is($out, $blob, 'a pull');

    ($rc, $out) = run_cmd(['curl', '-sS', '-o', '/dev/null', '-w',
                           '%{http_code}', "$base/no-such-file"]);
    is($out, '404', 'a request nginx logs an error for');

    my $b = '/v2/seed/app/blobs';
    my $push = qr{"POST $b/uploads/\?digest=\Q$d\E HTTP/1\.1" 201 .*"make-run-test"};
    my $pull = qr{"GET $b/\Q$d\E HTTP/1\.1" 200 .*"make-run-test"};

    ok(wait_for(sub { slurp("$tmp/stdout") =~ $pull }, 10),
       'stdout: the access log');
    like(slurp("$tmp/stdout"), $push, 'stdout: ... the push');
    like(slurp("$tmp/stdout"), $pull, 'stdout: ... the pull');
    like(slurp("$run/access.log"), $pull, 'run/access.log has it too');
    my $fields = "action=pull repo=seed/app ref=$d digest=$d error=-";
    like(slurp("$tmp/stdout"), qr{"GET $b/\Q$d\E HTTP/1\.1" 200 .* \Q$fields\E },
         'stdout: in the registry format');

    ok(wait_for(sub { slurp("$tmp/stderr") =~ /\[error\].*no-such-file/ }, 10),
       'stderr: the error');

    ok(-f "$data/docker/registry/v2/blobs/sha256/" . substr($d, 7, 2) . '/'
       . substr($d, 7) . '/data', 'the store is DATA');
}

# Ctrl-C: SIGINT to the foreground process group

my $nginx = RegTest::slurp("$run/nginx.pid") =~ /(\d+)/ ? $1 : 0;
ok($nginx, "nginx's pid file");

kill 'INT', -$pid;

my $exited = wait_for(sub { waitpid($pid, WNOHANG) == $pid }, 30);
ok($exited, 'SIGINT: make exits');
kill 'KILL', -$pid unless $exited;

ok(!answers(), 'SIGINT: the port is closed');
ok(wait_for(sub { !kill(0, $nginx) }, 10), 'SIGINT: the nginx master is gone');
ok(!-e "$run/nginx.pid", 'SIGINT: nginx removed its pid file (a clean exit)');
is((run_cmd(['pgrep', '-g', $pid]))[1], '',
   'SIGINT: no process of the group is left') if -x '/usr/bin/pgrep';
unlike(slurp("$tmp/stderr"), qr/\[(?:alert|emerg|crit)\]/,
       'stderr: no alerts');

done_testing();
