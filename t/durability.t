#!/usr/bin/perl

# What survives a power cut (README, "Durability") rests on the order of
# fsync() and rename(): strace (-y names each descriptor's file) follows a
# worker through a monolithic push, a chunked one, a tagged manifest push,
# a manifest DELETE, a tag DELETE and a blob DELETE, one request at a
# time, and checks in
# each request, before its response is written:
#   - every file renamed into the store (a blob's bytes, a link, a
#     manifest) was synced before its rename, and the directory that got
#     the name was synced after it; an upload's state and a tag's history
#     entry are the exceptions the README names, never synced;
#   - every fsync() is one of those, or of a directory that just gained a
#     directory (mkdir) or lost a name (a DELETE): nothing else is synced;
#   - opening a session and its PATCHes sync nothing;
#   - a manifest DELETE syncs the tags' removal before the revision link
#     goes, and then the revision's removal; a tag's or a blob's DELETE
#     syncs the directory that lost it.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(sleep);

use lib 't/lib';
use RegTest;

plan(skip_all => 'no /usr/bin/strace') unless -x '/usr/bin/strace';

my $OCI = 'application/vnd.oci.image.manifest.v1+json';

my $t = RegTest->new(delete => 1);
my $v2 = $t->root . '/docker/registry/v2';

# the repository exists before the trace, with the config blob
my $config = '{"architecture":"amd64","os":"linux"}';
my $cd = $t->push_blob('dur/r', $config);

my ($worker) = $t->pids_of_workers;
my $trace = $t->dir . '/strace.out';
my $pid = fork // die "fork: $!\n";

if ($pid == 0) {
    open STDERR, '>', '/dev/null';
    exec '/usr/bin/strace', '-f', '-yy', '-s', '64', '-o', $trace, '-e',
         'trace=fsync,fdatasync,rename,renameat,renameat2,mkdirat,unlinkat,'
         . 'write,writev',
         '-p', $worker;
    exit 127;
}

# strace attaches: wait until it traces something of ours
for (1 .. 100) {
    $t->req('GET', '/v2/');
    last if RegTest::slurp($trace) =~ /HTTP\/1\.1 200/;
    sleep 0.1;
}

my @steps;

sub step {
    my ($name, $want, $method, $path, %o) = @_;
    my $r = $t->req($method, $path, %o);
    is($r->{status}, $want, "$name: $want");
    push @steps, [$name, $r->{status}];
    return $r;
}

my $layer = join '', map { "durable layer line $_\n" } 1 .. 20000;
my $ld = RegTest::digest($layer);
step('monolithic push', 201, 'POST', "/v2/dur/r/blobs/uploads/?digest=$ld",
     content => $layer);

my $chunked = join '', map { "chunked line $_\n" } 1 .. 30000;
my $chd = RegTest::digest($chunked);
my $half = int(length($chunked) / 2);
my $loc = step('session opened', 202, 'POST', '/v2/dur/c/blobs/uploads/')
          ->{headers}{location};
step('first PATCH', 202, 'PATCH', $loc, content => substr($chunked, 0, $half),
     headers => { 'Content-Range' => '0-' . ($half - 1) });
step('second PATCH', 202, 'PATCH', $loc, content => substr($chunked, $half),
     headers => { 'Content-Range' => "$half-" . (length($chunked) - 1) });
step('chunked commit', 201, 'PUT', "$loc?digest=$chd");

my $m = qq({"schemaVersion":2,"mediaType":"$OCI","config":{"mediaType":)
        . qq("application/vnd.oci.image.config.v1+json","digest":"$cd",)
        . qq("size":) . length($config) . qq(},"layers":[{"mediaType":)
        . qq("application/vnd.oci.image.layer.v1.tar","digest":"$ld",)
        . qq("size":) . length($layer) . '}]}';
my $md = RegTest::digest($m);
step('tagged manifest push', 201, 'PUT', '/v2/dur/r/manifests/v1',
     content => $m, headers => { 'Content-Type' => $OCI });
step('manifest DELETE', 202, 'DELETE', "/v2/dur/r/manifests/$md");
step('manifest pushed again', 201, 'PUT', '/v2/dur/r/manifests/v2',
     content => $m, headers => { 'Content-Type' => $OCI });
step('tag DELETE', 202, 'DELETE', '/v2/dur/r/manifests/v2');
step('blob DELETE', 202, 'DELETE', "/v2/dur/c/blobs/$chd");

# the last response is in the trace, then strace goes
for (1 .. 100) {
    my $n = () = RegTest::slurp($trace) =~ /HTTP\/1\.1 20[12]/g;
    last if $n >= @steps;
    sleep 0.1;
}
kill 'INT', $pid;
waitpid $pid, 0;

# the calls, request by request: a request's calls end with its response
# (a write to the client's socket)

my (@segments, @calls);
for my $line (split /\n/, RegTest::slurp($trace)) {
    next if $line =~ /resumed>/;
    my ($call, $args) = $line =~ /^\d+\s+(\w+)\((.*)$/ or next;

    if ($call =~ /^write/) {
        next unless $args =~ /TCP:\[/;
        my ($status) = $args =~ /HTTP\/1\.1 (\d{3})/ or next;
        push @segments, { status => $status, calls => [@calls] };
        @calls = ();
        next;
    }

    # the files of the descriptors (-y), relative to the store; names
    my @files = map { s{^\Q$v2\E/?}{}r } $args =~ /<([^<>]*)>/g;
    my @names = $args =~ /"([^"]*)"/g;
    push @calls, { call => $call, files => \@files, names => \@names,
                   line => $line };
}

# the first segment is the GET /v2/ of the attach: the steps come after it
shift @segments while @segments > @steps;
is(join(' ', map { $_->{status} } @segments),
   join(' ', map { $_->[1] } @steps), 'a traced response for each step');

sub dir_of { my ($p) = @_; $p =~ s{/[^/]*$}{}; return $p }

# renames never synced: an upload's state, a tag's history entry
sub exempt {
    my ($target) = @_;
    return $target =~ m{/_uploads/[^/]+/[^/]+$}
           || $target =~ m{/_manifests/tags/[^/]+/index/};
}

for my $i (0 .. $#steps) {
    my ($name) = @{ $steps[$i] };
    my @c = @{ $segments[$i]{calls} // [] };
    my (@problems, %synced_before, @renamed);

    for my $k (0 .. $#c) {
        my $c = $c[$k];

        if ($c->{call} =~ /^rename/) {
            my $from = "$c->{files}[0]/$c->{names}[0]";
            my $to = "$c->{files}[1]/$c->{names}[1]";
            next if exempt($to);

            push @problems, "renamed unsynced: $from -> $to"
                unless $synced_before{$from};

            my $dir = dir_of($to);
            push @problems, "directory not synced after the rename: $to"
                unless grep { $_->{call} eq 'fsync'
                              && $_->{files}[0] eq $dir } @c[$k + 1 .. $#c];
        }

        if ($c->{call} =~ /^f(?:data)?sync$/) {
            my $f = $c->{files}[0];
            $synced_before{$f} = 1;

            # explained by a rename of the file after it, or by a change
            # of the directory before it
            my $why = grep {
                  ($_->{call} =~ /^rename/ && $_->{files}[0] eq dir_of($f)
                   && "$_->{files}[0]/$_->{names}[0]" eq $f)
            } @c[$k + 1 .. $#c];
            $why ||= grep {
                  ($_->{call} =~ /^(?:rename\w*|mkdirat|unlinkat)$/
                   && $_->{files}[-1] eq $f)
            } @c[0 .. $k - 1];
            push @problems, "fsync of $f: nothing needs it" unless $why;
        }
    }

    is(join("\n", @problems), '', "$name: synced in order, nothing more")
        or diag(join "\n", map { $_->{line} } @c);

    if ($name =~ /PATCH|session/) {
        is(scalar(grep { $_->{call} =~ /sync/ } @c), 0,
           "$name: no fsync at all");
    }

    if ($name eq 'tagged manifest push') {
        ok((grep { $_->{call} eq 'fsync'
                   && $_->{files}[0] =~ m{_manifests/tags/v1/current$} } @c),
           "$name: the tag's current link synced");
        is(join(',', map { $_->{files}[0] }
                     grep { $_->{call} eq 'fsync'
                            && $_->{files}[0] =~ m{/index(?:/|$)} } @c),
           '', "$name: its history entry not synced");
    }

    # a DELETE's last removal is followed by the sync of its directory
    my %gone = ('tag DELETE' => qr{_manifests/tags$},
                'blob DELETE' => qr{_layers/sha256$});
    if ($gone{$name}) {
        my ($last) = grep { $c[$_]{call} eq 'unlinkat' } reverse 0 .. $#c;
        ok(defined $last && grep({ $_->{call} eq 'fsync'
                                   && $_->{files}[0] =~ $gone{$name} }
                                 @c[$last + 1 .. $#c]),
           "$name: the removal synced")
            or diag(join "\n", map { $_->{line} } @c);
    }

    if ($name eq 'manifest DELETE') {
        my ($tags, $unlink, $rev);
        for my $k (0 .. $#c) {
            my $c = $c[$k];
            $tags //= $k if $c->{call} eq 'fsync'
                            && $c->{files}[0] =~ m{_manifests/tags$};
            $unlink //= $k if $c->{call} eq 'unlinkat'
                              && $c->{files}[0] =~ m{_manifests/revisions/}
                              && $c->{names}[0] eq 'link';
            $rev //= $k if $c->{call} eq 'fsync'
                           && $c->{files}[0] =~ m{_manifests/revisions/sha256$};
        }
        ok(defined $tags && defined $unlink && defined $rev
           && $tags < $unlink && $unlink < $rev,
           "$name: tags synced gone, then the revision link goes, synced")
            or diag(join "\n", map { $_->{line} } @c);
    }
}

# what was acknowledged is there
is($t->req('GET', "/v2/dur/r/blobs/$ld")->{content}, $layer,
   'the monolithic blob reads back');
is($t->req('GET', "/v2/dur/c/blobs/$chd")->{status}, 404,
   'the chunked blob, deleted, is gone from its repository');
is($t->req('GET', '/v2/dur/r/manifests/v1')->{status}, 404,
   'the tag of the deleted manifest is gone');
is($t->req('GET', '/v2/dur/r/manifests/v2')->{status}, 404,
   'the deleted tag is gone');
is($t->req('GET', "/v2/dur/r/manifests/$md")->{status}, 200,
   'the manifest pushed again is there');

$t->stop;
done_testing();
