package Bench::Report;

# The results as markdown: a header describing the machine and the
# software, the table (measurement, unit, A, B, C, A/B, A/C, target,
# met?), and notes (failed measurements, server log lines, caveats).
#
# A row: { name, unit, A, B, C (number, undef when failed, or 'n/a'),
#          error => { A => '...' }, fmt => '%.0f',
#          target => { text => '...', check => sub { $row -> 1|0 } } }

use strict;
use warnings;

use POSIX qw(strftime);

use Bench::Util qw(slurp run_cmd);

sub _cpu_model {
    my ($model) = slurp('/proc/cpuinfo') =~ /^model name\s*:\s*(.+)$/m;
    return $model // 'unknown';
}

sub _cores {
    my @cpus = slurp('/proc/cpuinfo') =~ /^processor\s*:/mg;
    return scalar @cpus;
}

sub _ram_gib {
    my ($kib) = slurp('/proc/meminfo') =~ /^MemTotal:\s*(\d+)/m;
    return sprintf '%.1f GiB', ($kib // 0) / 1024 / 1024;
}

sub _cmd_line {
    my (@cmd) = @_;
    my ($rc, $out, $err) = run_cmd(\@cmd, timeout => 20);
    my $text = "$out$err";
    $text =~ s/\s+$//;
    return (split /\n/, $text)[0] // '';
}

# "ext4 on /dev/vda (rotational: 1)"
sub _filesystem {
    my ($dir) = @_;

    my ($rc, $out) = run_cmd(['df', '-T', '-P', $dir], timeout => 20);
    my (undef, $line) = split /\n/, $out;
    my ($dev, $type, $size) = split ' ', ($line // '');
    return 'unknown' unless $dev;

    my ($base) = $dev =~ m{^/dev/([a-z]+)};
    my $rota = $base ? slurp("/sys/block/$base/queue/rotational") : '';
    chomp $rota;

    return sprintf '%s on %s, %.0f GiB%s', $type, $dev, $size / 1024 / 1024,
                   length $rota ? ", rotational=$rota" : '';
}

sub _git_revision {
    my ($repo) = @_;

    my $rev = _cmd_line('git', '-C', $repo, 'rev-parse', '--short', 'HEAD');
    my ($rc, $dirty) = run_cmd(['git', '-C', $repo, 'status', '--porcelain',
                                '--', 'src', 'config'], timeout => 20);
    return $rev . ($dirty =~ /\S/ ? ' + uncommitted changes in src/' : '');
}

sub header {
    my (%o) = @_;

    my $host = (POSIX::uname())[1];
    my @lines = (
        "# Benchmark: ngx_http_registry_module vs nginx static vs distribution",
        '',
        "- date: " . strftime('%Y-%m-%d %H:%M UTC', gmtime($o{started})),
        "- host: $host",
        "- CPU: " . _cpu_model() . ', ' . _cores() . ' cores',
        "- RAM: " . _ram_gib(),
        "- kernel: " . _cmd_line('uname', '-sr'),
        "- temp dir: $o{tmp} (" . _filesystem($o{tmp}) . ')',
        ($o{second_store} ? ("- second store (listings at scale): "
                             . $o{second_store}) : ()),
        "- nginx: " . _cmd_line($o{nginx}, '-v')
            . ", worker_processes $o{workers} for A and B; A's location: "
            . "`registry on; registry_delete on;"
            . ($o{a_extra} ? " $o{a_extra}" : '') . '`',
        "- module: git " . _git_revision($o{repo}),
        "- distribution: " . _cmd_line('docker-registry', '--version'),
        "- clients: " . _cmd_line('wrk', '-v') =~ s/ Copyright.*//r
            . '; ' . _cmd_line('h2load', '--version')
            . '; ' . _cmd_line('curl', '--version') =~ s/ \(.*//r,
        "- rounds: $o{rounds}, each A, B, C in turn; wrk $o{secs} s (a 1 s "
            . "warm-up first in round 1), median of the rounds",
        "- wall time: " . sprintf('%.0f s', $o{wall}),
        "- load average (1, 5, 15 min): $o{load}",
        '',
        'A = nginx + ngx_http_registry_module, B = the same nginx serving the '
            . 'same blob files as static files (no module), C = docker-registry '
            . '(distribution) on the same store. All on 127.0.0.1, clients '
            . 'on the same machine.',
    );

    return join("\n", @lines) . "\n";
}

sub _fmt {
    my ($v, $fmt) = @_;
    return 'n/a' if defined $v && $v eq 'n/a';
    return 'FAILED' unless defined $v;
    return sprintf($fmt || '%.0f', $v);
}

sub ratio {
    my ($x, $y) = @_;
    return undef unless defined $x && defined $y;
    return undef if $x eq 'n/a' || $y eq 'n/a' || !$y;
    return $x / $y;
}

sub _ratio_cell {
    my ($row, $other) = @_;
    return 'n/a' if grep { defined $_ && $_ eq 'n/a' } $row->{A}, $row->{$other};
    return $row->{"ratio_$other"} if defined $row->{"ratio_$other"};
    my $r = ratio($row->{A}, $row->{$other});
    return defined $r ? sprintf('%.2f', $r) : '—';
}

sub _met {
    my ($row) = @_;

    my $t = $row->{target} or return '';
    my $ok = $t->{check}->($row);

    return defined $ok ? ($ok ? 'yes' : '**NO**') : 'FAILED';
}

sub table {
    my ($rows) = @_;

    my @out = ('| measurement | unit | A | B | C | A/B | A/C | target | met? |',
               '|---|---|--:|--:|--:|--:|--:|---|---|');

    for my $row (@$rows) {
        push @out, '| ' . join(' | ',
            $row->{name}, $row->{unit},
            (map { _fmt($row->{$_}, $row->{fmt}) } qw(A B C)),
            _ratio_cell($row, 'B'), _ratio_cell($row, 'C'),
            $row->{target} ? $row->{target}{text} : '',
            _met($row)) . ' |';
    }

    return join("\n", @out) . "\n";
}

# every round's figure, for judging the noise behind a median
sub rounds_table {
    my ($rows) = @_;

    my @out = ('', '## Every round', '',
               '| measurement | unit | A | B | C |', '|---|---|---|---|---|');

    for my $row (@$rows) {
        my $r = $row->{rounds} or next;
        push @out, '| ' . join(' | ', $row->{name}, $row->{unit},
            map { $r->{$_} ? join(', ', map { _fmt($_, $row->{fmt}) }
                                        @{ $r->{$_} })
                           : _fmt($row->{$_}, $row->{fmt}) } qw(A B C))
            . ' |';
    }

    return join("\n", @out) . "\n";
}

sub notes {
    my ($rows, @extra) = @_;

    my @lines;

    for my $row (@$rows) {
        for my $s (qw(A B C)) {
            my $e = $row->{error}{$s} or next;
            $e =~ s/\s+/ /g;
            push @lines, "- $row->{name}, $s: FAILED: " . substr($e, 0, 300);
        }
    }

    push @lines, @extra;
    return @lines ? "\n## Notes\n\n" . join("\n", @lines) . "\n" : '';
}

1;
