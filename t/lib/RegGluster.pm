package RegGluster;

# A GlusterFS replica volume for t/glusterfs.t, made by the test and
# removed by it, whatever happens:
#
#   my $g = RegGluster->new(options => { 'performance.quick-read' => 'off' });
#                                 # plan(skip_all) without FUSE or netns;
#                                 # options: gluster volume set, before start
#   my $mnt = $g->mount(@glusterfs_client_options);   # a FUSE mount
#   ...
#   $g->cleanup;                  # also done at END
#
# Two servers, each a glusterd (and the brick and self-heal daemons it
# starts) in a network namespace of its own, rgl-PID-a and rgl-PID-b.
# glusterd refuses loopback addresses, so each namespace has an address
# of 10.251.N.0/24 (N from the test's pid) on a veth pair to the host, and
# the two namespaces a veth pair of their own for the traffic between the
# servers (no bridge: the host's bridge netfilter, set up by docker, may
# drop forwarded frames).  Each glusterd also has its own mount namespace
# (ip netns exec makes one), in which the test's directories are bound over
# /var/lib/glusterd, /run and /var/log/glusterfs: the packaged glusterd,
# if apt started one, and other tests' servers are left alone, and nothing
# is written outside the test's temporary directory.  The volume is
# "replica 2", one brick per server, in that directory (force: bricks on
# the root file system).  mount() runs a glusterfs FUSE client on the
# host, against the servers in turn.
#
# cleanup() unmounts (lazily if nginx still has files open), kills every
# process of the namespaces and the clients, deletes the namespaces (and
# so the veths) and the directory.  Leftovers of a test killed with
# SIGKILL (namespaces and mounts named after a pid that no longer runs)
# are removed by the next new().

use strict;
use warnings;

use Config;
use File::Path qw(make_path remove_tree);
use File::Spec;
use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Test::More ();

my @live;

sub new {
    my ($class, %o) = @_;

    _need_fuse_and_netns();

    for my $bin (qw(glusterd gluster glusterfs)) {
        die "RegGluster: no $bin (apt-get install glusterfs-server: make "
            . "test installs it)\n" unless _which($bin);
    }

    _sweep_leftovers();

    my $net = '10.251.' . (20 + $$ % 200);

    my $self = bless {
        owner => $$,
        vol => "rgl$$",
        dir => tempdir("regtest-gluster-$$-XXXXXXXX", TMPDIR => 1),
        nodes => [ map { {
            name => $_->[0],
            ns => "rgl-$$-$_->[0]",
            veth => "rgl" . $$ . $_->[0],
            ip => "$net.$_->[1]",
        } } (['a', 2], ['b', 3]) ],
        host_ip => "$net.1",
        options => $o{options} || {},
        clients => [],
    }, $class;

    push @live, $self;

    # daemons that leave glusterd (bricks, self-heal) become our children,
    # so that the ones we kill are reaped (PR_SET_CHILD_SUBREAPER)
    _prctl(36, 1);

    $self->_network();
    $self->_glusterd($_) for @{ $self->{nodes} };
    $self->_volume();

    return $self;
}

sub dir { $_[0]{dir} }
sub volume { $_[0]{vol} }
sub servers { map { $_->{ip} } @{ $_[0]{nodes} } }

# skips the whole test where FUSE or network namespaces are missing, and
# only there
sub _need_fuse_and_netns {
    Test::More::plan(skip_all => 'no FUSE: /dev/fuse is missing')
        unless -c '/dev/fuse';

    Test::More::plan(skip_all => 'no FUSE: /dev/fuse cannot be opened '
                                 . "($!)")
        unless open(my $fh, '+<', '/dev/fuse');

    my $probe = "rgl-$$-probe";
    my $out = `ip netns add $probe 2>&1`;

    Test::More::plan(skip_all => "no network namespaces: ip netns add: "
                                 . ($out || "exit status $?"))
        if $?;

    system('ip', 'netns', 'delete', $probe);
}

sub _which {
    my ($bin) = @_;
    return grep { -x "$_/$bin" } split(/:/, $ENV{PATH}), '/usr/sbin', '/sbin';
}

sub _prctl {
    my ($option, $arg) = @_;
    my $nr = $Config{archname} =~ /^x86_64-linux/ ? 157
           : $Config{archname} =~ /^aarch64-linux/ ? 167 : 0;
    syscall($nr, $option, $arg, 0, 0, 0) if $nr;
}

sub _run {
    my (@cmd) = @_;
    my $out = `@{[ map { "'$_'" } @cmd ]} 2>&1`;
    die "RegGluster: @cmd: $out\n" if $?;
    return $out;
}

sub _network {
    my ($self) = @_;

    my ($a, $b) = @{ $self->{nodes} };

    for my $n ($a, $b) {
        _run(qw(ip netns add), $n->{ns});
        _run(qw(ip -n), $n->{ns}, qw(link set lo up));
        _run(qw(ip link add), $n->{veth}, qw(type veth peer name eth0 netns),
             $n->{ns});
        _run(qw(ip addr add), "$self->{host_ip}/32", 'dev', $n->{veth});
        _run(qw(ip link set), $n->{veth}, 'up');
        _run(qw(ip route add), "$n->{ip}/32", 'dev', $n->{veth});
        _run(qw(ip -n), $n->{ns}, qw(addr add), "$n->{ip}/32", qw(dev eth0));
        _run(qw(ip -n), $n->{ns}, qw(link set eth0 up));
        _run(qw(ip -n), $n->{ns}, qw(route add), "$self->{host_ip}/32",
             qw(dev eth0));
    }

    _run(qw(ip -n), $a->{ns}, qw(link add peer0 type veth peer name peer0
         netns), $b->{ns});

    for ([$a, $b], [$b, $a]) {
        my ($n, $other) = @$_;
        _run(qw(ip -n), $n->{ns}, qw(link set peer0 up));
        _run(qw(ip -n), $n->{ns}, qw(route add), "$other->{ip}/32",
             qw(dev peer0));
    }
}

sub _glusterd {
    my ($self, $n) = @_;

    my $d = "$self->{dir}/$n->{name}";
    make_path(map { "$d/$_" } qw(lib run log brick));

    # geo-replication costs glusterd ten seconds of python at each start
    # (gsyncd --config-set-rx, again and again): in its mount namespace,
    # gsyncd is a script that only says its name (glusterd refuses to
    # start without one)
    my $gsyncd = `glusterfs --print-libexecdir 2>/dev/null`;
    chomp $gsyncd;
    $gsyncd = -x "$gsyncd/gsyncd" ? "$gsyncd/gsyncd" : '';
    _spew("$d/gsyncd", "#!/bin/sh\n"
                       . "[ \"\$1\" = --version ] && echo gsyncd.py 0\n"
                       . "exit 0\n");
    chmod 0755, "$d/gsyncd";

    my $pid = fork() // die "fork: $!\n";

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$d/glusterd.out";
        open STDERR, '>&', \*STDOUT;
        exec('ip', 'netns', 'exec', $n->{ns}, 'sh', '-c',
             "mount --bind $d/lib /var/lib/glusterd"
             . " && mount --bind $d/run /run"
             . " && mount --bind $d/log /var/log/glusterfs"
             . ($gsyncd ? " && mount --bind $d/gsyncd $gsyncd" : '')
             . " && exec glusterd -N --log-file=$d/log/glusterd.log")
            or POSIX::_exit(127);
    }

    # ip netns exec and sh exec: the pid is glusterd's
    $n->{pid} = $pid;

    $self->_wait("glusterd of $n->{ns}", sub {
        die "glusterd of $n->{ns} exited:\n" . _slurp("$d/glusterd.out")
            . _tail("$d/log/glusterd.log")
            if waitpid($pid, WNOHANG) == $pid;
        return $self->_cli_ok($n, 'peer', 'status');
    });
}

# the gluster command in the namespaces of a node's glusterd
sub _cli_ok {
    my ($self, $n, @args) = @_;
    my $out = `nsenter -t $n->{pid} -m -n gluster --mode=script @args 2>&1`;
    $self->{last_cli} = $out;
    return $? == 0;
}

sub cli {
    my ($self, @args) = @_;
    my $n = $self->{nodes}[0];
    die "RegGluster: gluster @args: $self->{last_cli}\n"
        unless $self->_cli_ok($n, @args);
    return $self->{last_cli};
}

sub _volume {
    my ($self) = @_;

    my ($a, $b) = @{ $self->{nodes} };

    $self->cli('peer', 'probe', $b->{ip});
    $self->_wait('peer in cluster', sub {
        $self->_cli_ok($a, 'peer', 'status')
            && $self->{last_cli} =~ /Peer in Cluster \(Connected\)/;
    });

    # a volume just probed may not be known to both yet: retried
    $self->_wait('volume create', sub {
        $self->_cli_ok($a, 'volume', 'create', $self->{vol}, 'replica', 2,
                       map({ "$_->{ip}:$self->{dir}/$_->{name}/brick/b" }
                           $a, $b),
                       'force');
    });

    for my $k (sort keys %{ $self->{options} }) {
        $self->cli('volume', 'set', $self->{vol}, $k, $self->{options}{$k});
    }

    $self->cli('volume', 'start', $self->{vol});

    $self->_wait('both bricks online', sub {
        $self->_cli_ok($a, 'volume', 'status', $self->{vol})
            && (() = $self->{last_cli} =~ /\s\d+\s+\d+\s+Y\s+\d+\s*$/mg) == 2;
    });
}

# a FUSE mount of the volume, from the servers in turn; options go to the
# glusterfs client (e.g. --attribute-timeout=0)
sub mount {
    my ($self, @opts) = @_;

    my $i = @{ $self->{clients} };
    my $n = $self->{nodes}[ $i % 2 ];
    my $mnt = "$self->{dir}/mnt$i";
    my $log = "$self->{dir}/client$i.log";

    make_path($mnt);

    _run('glusterfs', "--volfile-server=$n->{ip}",
         "--volfile-id=$self->{vol}", "--log-file=$log",
         "--pid-file=$self->{dir}/client$i.pid", @opts, $mnt);

    push @{ $self->{clients} }, { mnt => $mnt, log => $log,
                                  pidfile => "$self->{dir}/client$i.pid" };

    # usable once the client is attached to both bricks

    $self->_wait("mount $mnt", sub {
        my $l = _slurp($log);
        return _mounted($mnt)
               && (() = $l =~ /Connected, attached to remote volume/g) >= 2;
    });

    return $mnt;
}

sub client_log {
    my ($self, $i) = @_;
    return _slurp($self->{clients}[$i]{log});
}

sub _mounted {
    my ($mnt) = @_;
    return grep { (split ' ')[1] eq $mnt } split /\n/, _slurp('/proc/mounts');
}

sub _wait {
    my ($self, $what, $cond) = @_;

    my $end = time + 120;

    while (time < $end) {
        return if $cond->();
        sleep 0.2;
    }

    die "RegGluster: $what: not after 120 s\n" . ($self->{last_cli} // '');
}

sub cleanup {
    my ($self) = @_;

    return if $self->{cleaned}++ || $self->{owner} != $$;

    local ($?, $!, $@);

    for my $c (@{ $self->{clients} }) {
        my $pid = _slurp($c->{pidfile}) =~ /(\d+)/ ? $1 : 0;

        if (_mounted($c->{mnt})) {
            system('umount', $c->{mnt}) == 0
                or system('umount', '-l', $c->{mnt});
        }

        _kill_and_reap($pid) if $pid;
    }

    for my $n (@{ $self->{nodes} }) {
        next unless _ns_exists($n->{ns});
        _kill_and_reap(split ' ', `ip netns pids $n->{ns} 2>/dev/null`);
        waitpid($n->{pid}, 0) if $n->{pid};
        system('ip', 'netns', 'delete', $n->{ns});
    }

    # the veths go with the namespaces; a host end left by a failed set-up
    for my $n (@{ $self->{nodes} }) {
        system("ip link delete $n->{veth} 2>/dev/null");
    }

    if (grep { _mounted($_->{mnt}) } @{ $self->{clients} }) {
        Test::More::diag("RegGluster: still mounted, $self->{dir} is left");
        return;
    }

    if ($ENV{REGTEST_LEAVE}) {
        Test::More::diag("RegGluster: left $self->{dir}");
        return;
    }

    remove_tree($self->{dir});
}

sub _ns_exists {
    my ($ns) = @_;
    return -e "/run/netns/$ns";
}

# SIGKILL, then waits (up to 10 s) until each is gone; our children (the
# daemons, by PR_SET_CHILD_SUBREAPER) are reaped
sub _kill_and_reap {
    my (@pids) = grep { /^\d+$/ && $_ > 1 } @_;

    kill 'KILL', @pids;

    my $end = time + 10;

    for my $pid (@pids) {
        while (time < $end) {
            last if waitpid($pid, WNOHANG) != 0 && !kill(0, $pid);
            sleep 0.05;
        }
    }
}

# namespaces and mounts of a test that was killed (its pid is gone)
sub _sweep_leftovers {
    for my $ns (split /\n/, `ip netns list 2>/dev/null`) {
        next unless $ns =~ /^(rgl-(\d+)-[ab])\b/ && !kill(0, $2);
        $ns = $1;
        kill 'KILL', split ' ', `ip netns pids $ns 2>/dev/null`;
        system('ip', 'netns', 'delete', $ns);
    }

    for my $line (split /\n/, _slurp('/proc/mounts')) {
        my ($src, $mnt, $type) = split ' ', $line;
        next unless $type eq 'fuse.glusterfs' && $src =~ /:rgl(\d+)$/
                    && !kill(0, $1);
        system('umount', '-l', $mnt);
    }

    for my $dir (glob(File::Spec->tmpdir . '/regtest-gluster-*-*')) {
        next unless $dir =~ m{/regtest-gluster-(\d+)-[^/]+$} && !kill(0, $1);
        remove_tree($dir) unless grep { index((split ' ')[1], $dir) == 0 }
                                 split /\n/, _slurp('/proc/mounts');
    }
}

sub _slurp {
    my ($f) = @_;
    open(my $fh, '<', $f) or return '';
    local $/;
    my $s = <$fh>;
    return $s // '';
}

sub _spew {
    my ($f, $s) = @_;
    open(my $fh, '>', $f) or die "RegGluster: $f: $!\n";
    print $fh $s;
    close $fh or die "RegGluster: $f: $!\n";
}

sub _tail {
    my ($f) = @_;
    my @l = split /\n/, _slurp($f);
    return join("\n", @l[ ($#l > 30 ? $#l - 30 : 0) .. $#l ]) . "\n";
}

sub DESTROY { }

END {
    $_->cleanup for grep { defined } @live;
}

1;
