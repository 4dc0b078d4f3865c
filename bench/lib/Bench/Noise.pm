package Bench::Noise;

# How much CPU processes other than the benchmark used: on a 2-core
# machine, anything else running (a test suite, a build) shows in the
# figures.  Between two snapshots:
#
#   foreign = busy time of the whole machine (/proc/stat: user, nice,
#             system)
#           - this process and everything under it (its own times and
#             those of children it reaped, plus every live descendant's)
#           - the kernel's threads (writeback of our pushes, for one)
#
# so short-lived processes of others count too.
#
#   my $s = Bench::Noise::snapshot();
#   ...
#   my $secs = Bench::Noise::foreign_secs($s, Bench::Noise::snapshot());

use strict;
use warnings;

use POSIX ();
use Time::HiRes qw(time);

use Bench::Util qw(slurp);

my $TICK = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

sub snapshot {
    my %procs;    # pid => [ppid, utime + stime, cutime + cstime]

    opendir(my $dh, '/proc') or return { at => time };

    for my $pid (grep { /^\d+$/ } readdir $dh) {
        my $stat = slurp("/proc/$pid/stat");
        $stat =~ /^\d+ \(.*\) (.*)$/s or next;
        my @f = split ' ', $1;    # $f[0] is field 3 (state)
        $procs{$pid} = [$f[1], $f[11] + $f[12], $f[13] + $f[14]];
    }

    closedir $dh;

    my ($user, $nice, $system) = slurp('/proc/stat') =~ /^cpu\s+(\d+) (\d+) (\d+)/m;

    return { at => time, procs => \%procs,
             busy => ($user // 0) + ($nice // 0) + ($system // 0) };
}

# true when $pid is $root or under it
sub _descends {
    my ($procs, $pid, $root) = @_;

    for (1 .. 64) {
        return 1 if $pid == $root;
        my $p = $procs->{$pid} or return 0;
        $pid = $p->[0];
        return 0 if $pid <= 1;
    }

    return 0;
}

# CPU ticks of the processes $want selects, from $a to $b (a process
# born in between counts from zero)
sub _ticks {
    my ($a, $b, $want) = @_;

    my $ticks = 0;
    my $procs = $b->{procs};

    for my $pid (grep { $want->($_) } keys %$procs) {
        my $before = $a->{procs}{$pid};
        my $now = $procs->{$pid}[1];
        $ticks += $before && $before->[1] <= $now ? $now - $before->[1] : $now;
    }

    return $ticks;
}

# CPU seconds used by other processes between snapshots $a and $b
sub foreign_secs {
    my ($a, $b) = @_;

    return 0 unless $a->{procs} && $b->{procs};

    my $procs = $b->{procs};
    my $ours = _ticks($a, $b, sub { $_[0] != $$ && _descends($procs, $_[0], $$) });
    my $kernel = _ticks($a, $b, sub { $_[0] == 2 || $procs->{$_[0]}[0] == 2 });

    # this process: its own time and that of the children it reaped
    my ($me0, $me1) = map { $_->{procs}{$$} } $a, $b;
    $ours += ($me1->[1] + $me1->[2]) - ($me0->[1] + $me0->[2]) if $me0 && $me1;

    my $foreign = $b->{busy} - $a->{busy} - $ours - $kernel;
    return $foreign > 0 ? $foreign / $TICK : 0;
}

1;
