/**
 * Container image references: what `--image` takes, and the image a deployment runs when it is
 * not given (the package's name and version).
 */
import { CLIError, CliErrorCode } from '../errors.js';

/** A container image reference: `[registry[:port]/]path[:tag][@digest]`. */
const IMAGE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;

/**
 * Whether `image` is an image reference Docker and Kubernetes take (`name[:tag][@digest]`, with
 * an optional registry host and path).
 *
 * @example
 * ```ts
 * isImageReference('registry.example.com/shop:1.4.0'); // true
 * isImageReference('shop:1.0.0+build.5'); // false: a tag holds no "+"
 * ```
 */
export function isImageReference(image: string): boolean {
  return IMAGE.test(image);
}

/**
 * The image a deployment runs when `--image` is not given: the package's name (its scope's `@`
 * left out) and version, the version's build metadata (`1.0.0+build.5`) written as a tag may hold
 * it (`1.0.0_build.5`). Throws `E_USAGE` naming package.json, never `--image`, when that is still
 * no image reference.
 *
 * @example
 * ```ts
 * defaultImage({ name: '@acme/shop', version: '1.0.0+build.5' }); // 'acme/shop:1.0.0_build.5'
 * ```
 */
export function defaultImage(pkg: { readonly name: string; readonly version: string }): string {
  const image = `${pkg.name.replace(/^@/, '')}:${pkg.version.replaceAll('+', '_')}`;
  if (!isImageReference(image)) {
    throw new CLIError(CliErrorCode.E_USAGE, `The default image "${image}", made of package.json's name and version, is not an image reference.`, {
      hint: 'Pass --image with one, such as --image registry.example.com/team/my-shop:0.1.0.',
    });
  }
  return image;
}
