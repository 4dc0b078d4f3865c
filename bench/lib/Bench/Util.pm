package Bench::Util;

# Small helpers of the benchmark: files, commands, child processes that
# must not outlive the run, statistics.

use strict;
use warnings;

use Config;
use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Temp ();
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

# the test harness's file and port helpers, shared rather than copied;
# require, not use: its import would plan a test
use lib dirname(abs_path(__FILE__)) . '/../../../t/lib';
require RegTest;

our @EXPORT_OK = qw(slurp spew say_step run_cmd spawn spawn_code reap
                    stop_child stop_all_children running free_port wait_port
                    median which);

my @CHILDREN;    # every process spawn() started, until reaped

sub slurp { RegTest::slurp(@_) }
sub spew { RegTest::spew(@_) }

# a progress line on stderr, with the seconds since the start
my $T0 = time;

sub say_step {
    my ($msg) = @_;
    printf STDERR "[%6.1fs] %s\n", time - $T0, $msg;
}

sub which {
    my ($tool) = @_;
    return grep { -x "$_/$tool" } split /:/, ($ENV{PATH} || '');
}

# Runs a command (no shell); stdin /dev/null.  Returns (exit status,
# stdout, stderr); a command still running after `timeout` seconds
# (default 300) is killed and reported as status 255.
sub run_cmd {
    my ($cmd, %opts) = @_;

    my $out = File::Temp->new(UNLINK => 1);
    my $err = File::Temp->new(UNLINK => 1);
    my $pid = spawn($cmd, stdout => "$out", stderr => "$err");

    my $status = reap($pid, $opts{timeout} || 300);

    return ($status, slurp("$out"),
            ($status == 255 ? "timeout: @$cmd\n" : '') . slurp("$err"));
}

# Starts a command in the background; it gets SIGTERM if this process
# dies (prctl PR_SET_PDEATHSIG) and is stopped by stop_all_children.
# Options: stdout, stderr (file names; default /dev/null), env.
sub spawn {
    my ($cmd, %opts) = @_;

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        _child_setup(%opts);
        exec(@$cmd) or POSIX::_exit(127);
    }

    push @CHILDREN, $pid;
    return $pid;
}

# Runs $code in a forked child, which exits 0 when it returns true, else 1
# (never through END blocks: those belong to the parent).
sub spawn_code {
    my ($code) = @_;

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        _child_setup(stdout => '/dev/null', stderr => '&STDERR');
        my $ok = eval { $code->() };
        print STDERR "bench child: $@" unless $ok;
        POSIX::_exit($ok ? 0 : 1);
    }

    push @CHILDREN, $pid;
    return $pid;
}

my %EXITED;    # pid => wait status, for children running() saw exit

# true while a child has not exited
sub running {
    my ($pid) = @_;

    return 0 if exists $EXITED{$pid};
    return 1 if waitpid($pid, WNOHANG) == 0;

    $EXITED{$pid} = $?;
    _forget($pid);
    return 0;
}

sub _exit_code {
    my ($status) = @_;
    return $status & 127 ? 128 + ($status & 127) : $status >> 8;
}

sub _child_setup {
    my (%opts) = @_;

    open STDIN, '<', '/dev/null';
    open STDOUT, '>', $opts{stdout} || '/dev/null';
    open STDERR, '>', $opts{stderr} || '/dev/null'
        unless ($opts{stderr} // '') eq '&STDERR';
    @ENV{keys %{ $opts{env} }} = values %{ $opts{env} } if $opts{env};

    my $prctl = $Config{archname} =~ /^x86_64-linux/ ? 157
              : $Config{archname} =~ /^aarch64-linux/ ? 167 : 0;
    syscall($prctl, 1, 15) if $prctl;
}

# Waits for a child; its exit status, or 255 (killed) after $timeout s.
sub reap {
    my ($pid, $timeout) = @_;

    my $deadline = time + ($timeout || 300);

    return _exit_code(delete $EXITED{$pid}) if exists $EXITED{$pid};

    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            _forget($pid);
            return _exit_code($?);
        }
        sleep 0.01;
    }

    stop_child($pid, 'KILL', 1);
    return 255;
}

# $signal, then SIGKILL after $seconds
sub stop_child {
    my ($pid, $signal, $seconds) = @_;

    return unless $pid;

    kill $signal, $pid;

    for (1 .. ($seconds || 5) * 50) {
        if (waitpid($pid, WNOHANG) != 0) {
            _forget($pid);
            return;
        }
        sleep 0.02;
    }

    kill 'KILL', $pid;
    waitpid($pid, 0);
    _forget($pid);
}

sub _forget {
    my ($pid) = @_;
    @CHILDREN = grep { $_ != $pid } @CHILDREN;
}

sub stop_all_children {
    my @pids = reverse @CHILDREN;    # stop_child() edits @CHILDREN
    stop_child($_, 'TERM', 5) for @pids;
}

sub free_port { RegTest::free_port() }

# true once 127.0.0.1:$port accepts connections, while $pid runs
sub wait_port {
    my ($port, $pid, $seconds) = @_;

    for (1 .. ($seconds || 10) * 20) {
        return 0 if waitpid($pid, WNOHANG) == $pid;

        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp');
        if ($s) {
            close $s;
            return 1;
        }

        sleep 0.05;
    }

    return 0;
}

sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return undef unless @v;
    return $v[$#v / 2] if @v % 2;
    return ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

1;
