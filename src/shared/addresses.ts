/** The part after the last @, lower-cased: what delivery groups by and resolves. */
export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}
