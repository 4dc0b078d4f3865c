package JWT;

# JSON Web Tokens for the token tests, made with the openssl CLI and core
# Perl only, so that nothing of the module's own code mints what it checks.
#
#   my $k = JWT::genkey($dir, 'ec', 'p256');     # also rsa, p384, p521,
#                                                # ed25519
#   $k->{key}, $k->{pub}                         # PEM files
#   JWT::libtrust($k), JWT::thumbprint($k)       # the two forms of kid
#   JWT::jwk($k)                                 # its public JWK (a hash)
#   my $t = JWT::token(key => $k, alg => 'ES256', kid => ...,
#                      header => {...}, claims => {...});
#   JWT::token(..., header_json => '...', claims_json => '...')  # raw JSON
#   JWT::token(..., secret => $bytes, alg => 'HS256')             # HMAC
#   JWT::claims(iss => ..., aud => ..., access => [...], ...)   # a claim set
#                                         # with exp, nbf, iat set from now
#   JWT::cert($dir, 'int', $root, ca => 1)    # a certificate signed by
#                                         # $root (self-signed without one):
#                                         # a key with {pem, der} too
#   JWT::verify($k, $token)               # the signature, checked by
#                                         # openssl: ES256/384/512, EdDSA
#   JWT::decode($token)                   # (header, claims) as hashes
#   JWT::b64url($bytes), JWT::b64url_decode($text)

use strict;
use warnings;

use Digest::SHA qw(sha256 hmac_sha256);
use File::Temp qw(tempfile);
use POSIX ();
use JSON::PP;
use MIME::Base64 qw(encode_base64 decode_base64);

my $JSON = JSON::PP->new->canonical;

sub b64url {
    my ($bytes) = @_;
    my $s = encode_base64($bytes, '');
    $s =~ tr{+/}{-_};
    $s =~ s/=+$//;
    return $s;
}

sub b64url_decode {
    my ($s) = @_;
    $s =~ tr{-_}{+/};
    $s .= '=' x ((4 - length($s) % 4) % 4);
    return decode_base64($s);
}

# runs openssl; its stdout, or dies (its stderr is dropped: openssl is
# chatty about what succeeds)
sub openssl {
    my (@args) = @_;

    my $pid = open(my $out, '-|') // die "fork: $!\n";

    if ($pid == 0) {
        open STDERR, '>', '/dev/null';
        exec 'openssl', @args or POSIX::_exit(127);
    }

    binmode $out;
    local $/;
    my $data = <$out>;
    close $out;
    die "openssl @args failed\n" if $?;

    return defined $data ? $data : '';
}

my %GENPKEY = (
    rsa     => ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
    rsa1024 => ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'],
    p256    => ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
    p384    => ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
    p521    => ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-521'],
    ed25519 => ['-algorithm', 'ED25519'],
);

sub genkey {
    my ($dir, $name, $type) = @_;

    my $key = "$dir/$name.key";
    my $pub = "$dir/$name.pub";

    openssl('genpkey', @{ $GENPKEY{$type} }, '-out', $key);
    openssl('pkey', '-in', $key, '-pubout', '-out', $pub);

    return { key => $key, pub => $pub, type => $type, name => $name };
}

# the DER SubjectPublicKeyInfo
sub spki {
    my ($k) = @_;
    return openssl('pkey', '-pubin', '-in', $k->{pub}, '-outform', 'DER');
}

# libtrust: SHA-256 of the SPKI, 240 bits in base32, groups of 4 with ':'
sub libtrust {
    my ($k) = @_;

    my $bits = unpack('B240', sha256(spki($k)));
    my @alphabet = ('A' .. 'Z', '2' .. '7');
    my $b32 = join '', map { $alphabet[oct("0b$_")] } $bits =~ /(.{5})/g;

    return join ':', $b32 =~ /(.{4})/g;
}

my %EC = (p256 => ['P-256', 32], p384 => ['P-384', 48], p521 => ['P-521', 66]);

# the public JWK's members
sub jwk {
    my ($k) = @_;

    if ($k->{type} =~ /^rsa/) {
        my $mod = openssl('rsa', '-pubin', '-in', $k->{pub}, '-noout',
                          '-modulus');
        $mod =~ /Modulus=([0-9A-F]+)/ or die "no modulus\n";
        return { kty => 'RSA', n => b64url(pack('H*', $1)),
                 e => b64url("\x01\x00\x01") };
    }

    my $spki = spki($k);

    if ($k->{type} eq 'ed25519') {
        return { kty => 'OKP', crv => 'Ed25519', x => b64url(substr($spki, -32)) };
    }

    my ($crv, $size) = @{ $EC{ $k->{type} } };
    my $point = substr($spki, -(2 * $size + 1));
    die "not an uncompressed point\n" unless substr($point, 0, 1) eq "\x04";

    return { kty => 'EC', crv => $crv,
             x => b64url(substr($point, 1, $size)),
             y => b64url(substr($point, 1 + $size, $size)) };
}

# RFC 7638: the required members in order, no white space
sub thumbprint {
    my ($k) = @_;

    my $j = jwk($k);
    my @members = $j->{kty} eq 'RSA' ? qw(e kty n)
                : $j->{kty} eq 'OKP' ? qw(crv kty x) : qw(crv kty x y);

    my $json = '{' . join(',', map { "\"$_\":\"$j->{$_}\"" } @members) . '}';

    return b64url(sha256($json));
}

my %ALG = (
    RS256 => ['sha256', 'pkcs1'], RS384 => ['sha384', 'pkcs1'],
    RS512 => ['sha512', 'pkcs1'], PS256 => ['sha256', 'pss'],
    ES256 => ['sha256', 32], ES384 => ['sha384', 48], ES512 => ['sha512', 66],
);

# the signature of $input by key $k under $alg, as JWS wants it
sub sign {
    my ($k, $alg, $input) = @_;

    my ($fh, $file) = tempfile(UNLINK => 1);
    binmode $fh;
    print $fh $input;
    close $fh;

    if ($alg eq 'EdDSA') {
        return openssl('pkeyutl', '-sign', '-inkey', $k->{key}, '-rawin',
                       '-in', $file);
    }

    my ($md, $kind) = @{ $ALG{$alg} or die "unknown alg $alg\n" };
    my @pss = $kind eq 'pss'
        ? ('-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:-1')
        : ();

    my $sig = openssl('dgst', "-$md", '-sign', $k->{key}, @pss, '-binary',
                      $file);

    return $kind =~ /^\d+$/ ? der_to_raw($sig, $kind) : $sig;
}

# ECDSA-Sig-Value (DER) to JWS's R||S, each $size bytes
sub der_to_raw {
    my ($der, $size) = @_;

    my $p = 0;
    my $byte = sub { return ord(substr($der, $p++, 1)) };

    die "not a sequence\n" unless $byte->() == 0x30;
    my $len = $byte->();
    if ($len & 0x80) {
        my $n = $len & 0x7f;
        $len = 0;
        $len = $len * 256 + $byte->() for 1 .. $n;
    }

    my $raw = '';

    for (1 .. 2) {
        die "not an integer\n" unless $byte->() == 0x02;
        my $ilen = $byte->();
        my $int = substr($der, $p, $ilen);
        $p += $ilen;
        $int =~ s/^\x00+//;
        $raw .= ("\x00" x ($size - length $int)) . $int;
    }

    return $raw;
}

# JWS's R||S as the DER ECDSA-Sig-Value openssl verifies
sub raw_to_der {
    my ($raw) = @_;

    my $half = length($raw) / 2;
    my $body = '';

    # copies: a loop variable would alias substr()'s lvalues into $raw
    my @ints = (substr($raw, 0, $half), substr($raw, $half));

    for my $int (@ints) {
        $int =~ s/^\x00+//;
        $int = "\x00$int" if $int eq '' || ord($int) >= 0x80;
        $body .= "\x02" . chr(length $int) . $int;
    }

    my $len = length $body;

    return "\x30" . ($len < 128 ? chr($len) : "\x81" . chr($len)) . $body;
}

# whether openssl verifies the token's signature with $k's public key
sub verify {
    my ($k, $token) = @_;

    my ($head, $payload, $sig) = split /\./, $token;
    my ($alg) = decode($token)->{alg};
    my $raw = b64url_decode($sig);

    my ($ifh, $input) = tempfile(UNLINK => 1);
    my ($sfh, $sigfile) = tempfile(UNLINK => 1);
    binmode $_ for $ifh, $sfh;
    print $ifh "$head.$payload";
    print $sfh $alg eq 'EdDSA' ? $raw : raw_to_der($raw);
    close $_ for $ifh, $sfh;

    my @cmd = $alg eq 'EdDSA'
        ? ('pkeyutl', '-verify', '-pubin', '-inkey', $k->{pub}, '-rawin',
           '-in', $input, '-sigfile', $sigfile)
        : ('dgst', '-' . $ALG{$alg}[0], '-verify', $k->{pub}, '-signature',
           $sigfile, $input);

    return eval { openssl(@cmd); 1 } ? 1 : 0;
}

# the header and the claims of a token, unverified
sub decode {
    my ($token) = @_;
    my ($head, $payload) = split /\./, $token;
    my $h = JSON::PP->new->decode(b64url_decode($head));
    my $c = JSON::PP->new->decode(b64url_decode($payload));
    return wantarray ? ($h, $c) : $h;
}

# a claim set valid for 5 minutes from now, with what %o adds or replaces
sub claims {
    my (%o) = @_;
    my $now = time;
    return { iss => 'test-issuer', aud => 'test-registry', sub => 'alice',
             iat => $now, nbf => $now, exp => $now + 300,
             jti => 'jti-' . int(rand(1e9)), access => [], %o };
}

sub token {
    my (%o) = @_;

    my $alg = $o{alg};
    my %header = (typ => 'JWT', alg => $alg,
                  ($o{kid} ? (kid => $o{kid}) : ()), %{ $o{header} || {} });

    my $h = $o{header_json} // $JSON->encode(\%header);
    my $c = $o{claims_json} // $JSON->encode($o{claims} || claims());

    my $input = b64url($h) . '.' . b64url($c);

    my $sig = $alg eq 'none' ? ''
            : $alg =~ /^HS/ ? hmac_sha256($input, $o{secret})
            : sign($o{key}, $alg, $input);

    return "$input." . b64url($sig);
}

# a CA certificate (self-signed when $issuer is undef), or a leaf
sub cert {
    my ($dir, $name, $issuer, %o) = @_;

    my $type = $o{type} || 'p256';
    my $k = genkey($dir, $name, $type);
    my $pem = "$dir/$name.pem";

    my $ext = "$dir/$name.ext";
    open(my $fh, '>', $ext) or die "$ext: $!\n";
    print $fh "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=$name\n[v3]\n",
        $o{ca} ? "basicConstraints=critical,CA:TRUE\n"
                 . "keyUsage=critical,keyCertSign,cRLSign\n"
                 . "subjectKeyIdentifier=hash\n"
               : "basicConstraints=critical,CA:FALSE\n"
                 . "keyUsage=critical,digitalSignature\n";
    close $fh;

    if ($issuer) {
        openssl('req', '-new', '-key', $k->{key}, '-config', $ext,
                '-out', "$dir/$name.csr");
        openssl('x509', '-req', '-in', "$dir/$name.csr",
                '-CA', $issuer->{pem}, '-CAkey', $issuer->{key},
                '-CAcreateserial', '-days', '2', '-extfile', $ext,
                '-extensions', 'v3', '-out', $pem);
    } else {
        openssl('req', '-x509', '-new', '-key', $k->{key}, '-config', $ext,
                '-extensions', 'v3', '-days', '2', '-out', $pem);
    }

    $k->{pem} = $pem;
    $k->{der} = openssl('x509', '-in', $pem, '-outform', 'DER');

    return $k;
}

1;
